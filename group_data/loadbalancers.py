"""Settings for the load balancers (validated by webstack/settings.py: HAProxySettings,
KeepalivedSettings). keepalived_floating_ip, the stack's public address, is set per environment
in the inventory.
"""

# --- HAProxy (tasks/haproxy.py) -----------------------------------------------------------
haproxy_balance = "roundrobin"     # roundrobin | leastconn | source | first
haproxy_server_weights = {}        # e.g. {"web-01": 200}: twice the share of a default server
haproxy_sticky_sessions = False    # a cookie pins clients to a server; off to show round-robin
haproxy_tls_names = []             # DNS names for the stack CA's certificate, e.g. ["shop.example"]
haproxy_hsts_max_age = 63072000    # two years, as Mozilla recommends
haproxy_stats_port = 8404          # stats page (/stats) and Prometheus /metrics, own address only
haproxy_stats_user = "admin"       # password: secret HAPROXY_STATS_PASSWORD
# Health checks: GET <app_health_path> every 0.5 s (each may take as long); 2 failures (about
# 1-2 s) take a server out, so a frozen server holds requests for at most about 2 s.
haproxy_check_interval_ms = 500
haproxy_check_fall = 2
haproxy_check_rise = 2
haproxy_check_host = "localhost"
haproxy_retries = 3                # with redispatch: a retry goes to another server
haproxy_timeout_connect_ms = 1000
haproxy_timeout_client_s = 30
haproxy_timeout_server_s = 30
haproxy_hard_stop_after = "30s"    # old workers finish their requests for at most this long
haproxy_maxconn = 4096           # needs 2 file descriptors each; raise with LimitNOFILE
haproxy_extra_global = ""          # raw lines for the global section, checked by haproxy -c
haproxy_drain_timeout_s = 30       # rolling app deploy: wait this long for a drained server

# --- keepalived (tasks/keepalived.py) -----------------------------------------------------
keepalived_interface = "eth0"
keepalived_router_id = 51          # VRRP id: unique among VRRP groups on the same network
keepalived_unicast = False         # True where the network drops multicast (most clouds)
keepalived_handover_drain_s = 3    # planned IP move: new connections wait, open ones finish
