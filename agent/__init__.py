"""The database agent (issue #15): one per database host, `python3 -m agent.service`. Its
decision is a pure function (agent/decision.py); see agent/README.md."""
