"""The contracts every layer above shares: the job spec, wire types by topic, Temporal names.

- ``contracts.spec``: the job spec a user writes (``JobSpec``), validated before anything starts.
- ``contracts.models``: a model call: messages, usage, prices, requests and results.
- ``contracts.jobs``: a job as clients see it: status, stop reasons, turns, ledger totals, result.
- ``contracts.state``: what a job carries across continue-as-new.
- ``contracts.controls``: the signals' and updates' payloads (interrupt, inject, approve, ...).
- ``contracts.routing``, ``contracts.accounts``, ``contracts.board``, ``contracts.outputs``: the wire
  types of routing, budget accounts, the team board and structured model outputs.
- ``contracts.names``, ``contracts.search_attributes``: names running histories refer to.

Pure data: pydantic models and constants, importing only ``policies`` (the layer below) and pydantic.
"""
