"""Settings for the monitoring host (validated by webstack/settings.py: MonitoringSettings).

Prometheus scrapes every exporter the inventory implies; Alertmanager sends alerts to a webhook
or by mail (at least one must be set; the lab sets its own recording receiver).
"""

prometheus_port = 9090               # UI and API, open to admin_networks only
prometheus_scrape_interval = "15s"
prometheus_retention = "15d"
alertmanager_port = 9093             # UI and API, open to admin_networks only
alertmanager_webhook_url = ""        # e.g. your chat or paging integration's webhook
alertmanager_email_to = ""           # e.g. "oncall@example.org"
alertmanager_email_from = "alertmanager@localhost"
alertmanager_smarthost = "localhost:25"
alert_receiver_lab = False           # the lab's recording receiver (inventories/lab.py)
mysqld_exporter_base_port = 9104     # one exporter per database host, on 127.0.0.1:9104, 9105...
blackbox_exporter_port = 9115        # probes https://<floating IP>/healthz, on 127.0.0.1

# How long a condition must hold before it alerts (short in the lab, see inventories/lab.py).
alert_for_instance_down = "1m"
alert_for_web_server_down = "1m"
alert_for_replication = "1m"
alert_for_default = "5m"
alert_replication_lag_seconds = 10.0  # measured with the heartbeat, not Seconds_Behind_Master
alert_5xx_ratio = 0.05               # share of 5xx answers at the load balancer
alert_disk_free_ratio = 0.10         # free space on any filesystem
alert_certificate_days = 14          # days before the floating IP's certificate expires
