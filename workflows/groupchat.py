"""Group chat, the round-robin analogue: agents take turns on one shared conversation.

Who speaks next is the spec's turn policy: ``round_robin`` (fixed rotation), ``fair_share`` (the
agent that has had the fewest tokens relative to its weight, as in CFS), or ``selector`` (a model
picks the next speaker; charged like any call). A round is one turn per agent. After each round the
goal is checked and the convergence monitor watches for plateaus and livelock. An agent with
``route`` or ``cascade`` speaks through ``TurnRouter`` (a turn's rungs see the same conversation;
only the kept reply joins it); its routing records are in the result's ``routing``, for this run
(records of earlier runs of a continued chat are in the transcript's ``routing`` fields).

A long chat keeps its history small: between two turns, once the server suggests it (or after
``chat.turns_per_run`` turns of one run), the job continues as new, carrying the conversation, the
turn policies' state and termination in ``JobState.chat``, with everything else the job keeps.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.jobs import JobResult, StopReason
    from contracts.models import Message
    from contracts.prompts import opening_values, render
    from contracts.spec import AgentSpec, JobSpec
    from contracts.state import ChatState, JobInput
    from policies.scheduling import FairShare, RoundRobin

from workflows._job import JobWorkflow, StopJob
from workflows._routing import TurnRouter
from workflows._termination import Termination
from workflows._tools import exchanges

HUMAN = "human"


def view_for(agent: str, conversation: list[tuple[str, str]]) -> list[Message]:
    """The conversation as ``agent`` sees it: its own turns as assistant, others' as named user turns.

    Consecutive user turns are merged, since some providers want roles to alternate.
    """
    messages: list[Message] = []
    for speaker, text in conversation:
        if speaker == agent:
            messages.append(Message(role="assistant", content=text, name=agent))
            continue
        content = text if speaker == HUMAN else f"[{speaker}] {text}"
        if messages and messages[-1].role == "user":
            messages[-1] = Message(role="user", content=f"{messages[-1].content}\n\n{content}")
        else:
            messages.append(Message(role="user", content=content))
    if not messages or messages[-1].role != "user":
        messages.append(Message(role="user", content="Continue."))
    return messages


@workflow.defn(name="GroupChatJob")
class GroupChatJob(JobWorkflow):
    """Agents converse in turns until the goal is met or termination says stop."""

    mode = "groupchat"

    @workflow.run
    async def run(self, job_input: JobInput) -> JobResult:
        """Run rounds of turns; check the goal and convergence after each round.

        A run started by continue-as-new finds the chat in its state and goes on where the previous
        run stopped, between two turns.
        """
        spec = self.spec
        names = [agent.name for agent in spec.agents]
        if self.state.chat is None:
            self.state.chat = ChatState(
                conversation=[(HUMAN, render(spec.chat.opening, opening_values(spec)))],
                rotation=RoundRobin(agents=names),
                fair=FairShare.of({agent.name: agent.weight for agent in spec.agents}),
            )
        chat = self.state.chat
        termination = Termination(self, spec, chat.termination)
        router = TurnRouter(self, spec)  # routes the turns of agents with 'route' or 'cascade'
        self.state.steps_total = spec.termination.max_rounds
        turns_this_run = 0
        try:
            await self.start_job()  # a worker-side error (unknown price, say) ends the job failed
            while chat.round <= spec.termination.max_rounds:
                self.state.round = chat.round
                while chat.turns_in_round < len(names):
                    if self.should_continue_as_new(turns_this_run, spec.chat.turns_per_run):
                        await self.continue_as_new()
                    await self._wait_while_paused()  # so messages sent during a pause reach this turn
                    for pending in self.pending_messages():
                        chat.conversation.append((HUMAN, pending.message))
                    speaker = await self._next_speaker(spec, chat.rotation, chat.fair, chat.conversation)
                    self.state.step = f"round {chat.round}: {speaker}"
                    # The conversation is shared: messages join it (above); a cut turn stays in it as it is.
                    view = view_for(speaker, chat.conversation)
                    before = len(self.state.turns)
                    seen = len(view)
                    result = await router.agent_turn(spec.agent(speaker), view, deliver=False, resume=False)
                    # The conversation shows the turn's tool calls and results, then its answer.
                    chat.conversation += [(speaker, line) for line in exchanges(view[seen:])]
                    chat.conversation.append((speaker, result.text))
                    # Every call of the turn counts: a routed turn's failed rungs and judges too.
                    chat.fair.charge(speaker, sum(t.usage.total_tokens for t in self.state.turns[before:]))
                    termination.record_output(speaker, result.text)
                    chat.turns_in_round += 1
                    turns_this_run += 1
                self.state.steps_done = chat.round
                await termination.after_round()
                chat.round, chat.turns_in_round = chat.round + 1, 0
        except StopJob as stop:
            return router.annotate(
                await self.conclude(
                    stop.reason, stop.explanation, termination.best_output(), termination.outputs()
                )
            )
        return router.annotate(
            await self.conclude(
                StopReason.max_rounds,
                f"{spec.termination.max_rounds} rounds ran without the goal being met",
                termination.best_output(),
                termination.outputs(),
            )
        )

    def call_label(self, agent: str, model: str, step: str | None) -> str:
        """'<agent> on <model> (round N)': a chat's turns have no step, its round says where they are."""
        return f"{agent} on {model} (round {self.state.round}" + (f", {step})" if step else ")")

    async def _next_speaker(
        self, spec: JobSpec, rotation: RoundRobin, fair: FairShare, conversation: list[tuple[str, str]]
    ) -> str:
        policy = spec.chat.turn_policy
        if policy == "fair_share":
            return fair.next()
        if policy == "selector" and spec.chat.selector_model:
            names = [agent.name for agent in spec.agents]
            selector = AgentSpec(
                name="selector",
                model=spec.chat.selector_model,
                instructions="Pick who speaks next. Answer with exactly one name.",
                max_output_tokens=16,
            )
            recent = "\n".join(f"[{who}] {text[:300]}" for who, text in conversation[-6:])
            prompt = f"Conversation so far:\n{recent}\n\nCandidates: {', '.join(names)}"
            reply = await self.turn(
                selector,
                [Message(role="user", content=prompt)],
                step="select speaker",
                deliver=False,
                resume=False,
            )
            choice = reply.text.strip().strip(".").strip()
            if choice in names:
                return choice
            self.state.detail = f"selector answered {choice[:40]!r}; fell back to round robin"
        return rotation.next()
