"""ha-webstack's own Python: typed settings, secrets, the firewall policy and deploy helpers."""

from pathlib import Path

# The repository: group_data/, templates/, secrets/ and the default app are found from here.
ROOT = Path(__file__).resolve().parent.parent
