"""The database agent (issue #15): one per database host. Only its decision logic exists so far,
as a pure function in agent/decision.py; see agent/README.md."""
