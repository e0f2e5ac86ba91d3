"""ha-webstack's own Python: typed settings, secrets, the firewall policy and deploy helpers."""
