"""Settings for the load balancers (validated by webstack/settings.py: LoadBalancerSettings).

keepalived_floating_ip, the stack's public address, is set per environment in the inventory.
"""
