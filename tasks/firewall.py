"""ufw on every managed host: default deny, and exactly the rules webstack/policy.py computes.

Order matters for not locking the deploy out: the policy's rules (SSH first) are added before
the default-deny and `ufw enable` take effect, and stale rules are removed last. ufw keeps
established connections, so the deploy's own SSH session survives every step.
"""

from pyinfra import host
from pyinfra.operations import server

from webstack.context import me, stack
from webstack.facts import UfwRules, UfwStatus
from webstack.policy import rules_for, stale_rule_removals

DEFAULTS = "deny (incoming), allow (outgoing), deny (routed)"


wanted = rules_for(stack(), me())
present = {r.key: r for r in host.get_fact(UfwRules)}
status = host.get_fact(UfwStatus)

for rule in wanted:
    # A rule re-added with a new comment is updated in place by ufw.
    if rule.key not in present or present[rule.key].comment != rule.comment:
        server.shell(name=f"ufw: {rule.comment} ({rule.proto}/{rule.port} from {rule.source})",
                     commands=[f"ufw {rule.ufw_spec()} comment '{rule.comment}'"])

if status["defaults"] != DEFAULTS:
    server.shell(name="ufw: default deny incoming, allow outgoing, deny routed",
                 commands=["ufw default deny incoming", "ufw default allow outgoing",
                           "ufw default deny routed"])

logging = me().ufw_logging
if status["logging"] != ("off" if logging == "off" else f"on ({logging})"):
    server.shell(name=f"ufw: logging {logging}", commands=[f"ufw logging {logging}"])

if not status["active"]:
    server.shell(name="ufw: enable", commands=["ufw --force enable"])

for name, command in stale_rule_removals(list(present.values()), wanted):
    server.shell(name=name, commands=[command])
