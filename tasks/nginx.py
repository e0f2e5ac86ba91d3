"""nginx on every web server: one site proxying to the app, static files served directly.

Every config file is checked with `nginx -t` before nginx reloads (webstack/ops.py), so a bad
setting fails the deploy and leaves nginx serving the previous config. Reads NginxSettings and
AppSettings (group_data/webservers.py); proven by tests/test_nginx.py.
"""

from pyinfra.operations import apt, files, systemd
from pyinfra.operations.util import any_changed

from webstack.context import me, stack
from webstack.ops import validated_template

s = me()
static_dir = f"/opt/ha-webstack-app/{s.app_static_dir}" if s.app_static_dir else ""

apt.packages(name="nginx", packages=["nginx"], no_recommends=True)
default_site = files.link(name="No default site", path="/etc/nginx/sites-enabled/default",
                          present=False)
http = validated_template("templates/nginx/ha-webstack.conf.j2",
                          "/etc/nginx/conf.d/ha-webstack.conf", validate="nginx -t", s=s,
                          lb_addresses=stack().addresses("loadbalancers"))
site = validated_template("templates/nginx/site.conf.j2",
                          "/etc/nginx/sites-enabled/ha-webstack.conf", validate="nginx -t", s=s,
                          static_dir=static_dir)
systemd.service(name="Reload nginx", service="nginx", running=True, enabled=True, reloaded=True,
                _if=any_changed(default_site, http, site))
systemd.service(name="nginx running and enabled", service="nginx", running=True, enabled=True)
