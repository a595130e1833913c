"""harness: a durable scheduler for AI-agent work, built on Temporal."""
