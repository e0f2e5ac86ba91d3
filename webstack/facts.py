"""pyinfra facts that pyinfra does not ship: ufw's state.

Written by hand because pyinfra has no ufw fact or operation; ufw's own rules files are the
authoritative record (`ufw status` output omits comments and differs between versions).
"""

from pyinfra.api import FactBase

from webstack.policy import Rule, normalize_source


class UfwRules(FactBase):
    """The user rules ufw holds (IPv4 and IPv6), as canonical Rules."""

    default = list

    def command(self):
        return "cat /etc/ufw/user.rules /etc/ufw/user6.rules 2>/dev/null || true"

    def process(self, output):
        rules = {}
        for line in output:
            if not line.startswith("### tuple ### "):
                continue
            fields = line.split()[3:]
            action, proto, dport, _dst, _sport, src = fields[:6]
            comment = next((bytes.fromhex(f[8:]).decode() for f in fields
                            if f.startswith("comment=")), "")
            rule = Rule(action, proto, dport, normalize_source(src), comment)
            rules[rule.key] = rule
        return list(rules.values())


class UfwStatus(FactBase):
    """{'active': bool, 'defaults': 'deny (incoming), ...', 'logging': 'on (low)'}."""

    def command(self):
        return "ufw status verbose 2>/dev/null || echo 'Status: absent'"

    def process(self, output):
        status = {"active": False, "defaults": "", "logging": ""}
        for line in output:
            key, _, value = line.partition(":")
            if key == "Status":
                status["active"] = value.strip() == "active"
            elif key == "Default":
                status["defaults"] = value.strip()
            elif key == "Logging":
                status["logging"] = value.strip()
        return status
