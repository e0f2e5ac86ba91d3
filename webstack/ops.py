"""Config files that are validated before a service ever sees them.

pyinfra's files.template writes a file in place; a service reloaded onto a bad file breaks. Here
the rendered file goes to a staging copy first; when it changed, or differs from the installed
file (a run cut short before the install, or an edit by hand), it is installed, the service's
own checker run (`nginx -t`, `haproxy -c`, `sshd -t`, ...), and on failure the previous file is
put back and the deploy stops with the checker's output. The staging copy stays as the record of
what was last installed, which keeps a re-run change-free.
"""

from pyinfra import host
from pyinfra.facts.files import Sha1File
from pyinfra.operations import files, server

STAGING_DIR = "/var/lib/ha-webstack/staged"


def _activation(activate: str, dest: str) -> str:
    """The script's step that puts the new file in service, restoring the old one on failure."""
    if not activate:
        return ""
    return f"""if ! out=$({activate} 2>&1); then
  restore
  echo "ha-webstack: the service did not take the new {dest}; the previous file is back in" \
       "place and the running service keeps its old configuration. Output:" >&2
  echo "$out" >&2
  exit 1
fi
"""


def validated_template(src: str, dest: str, validate: str, mode: str = "644",
                       activate: str = "", **context):
    """Render src to dest, keeping dest unchanged unless `validate` accepts the new file.

    `activate`, when given, puts the new file in service (a reload that checks its own
    outcome); if it fails, the previous file is put back too, so a later restart cannot pick up
    a file the service refused. Returns the install operation: pass `_if=result.did_change`
    to a reload that follows (not needed with `activate`). Global arguments in `context`
    (e.g. _if) apply to the rendering, and so to the install.
    """
    staged = _staged_path(dest)
    files.directory(name=f"Staging directory for {dest}", path=STAGING_DIR, mode="700")
    render = files.template(name=f"Render {dest} (staged)", src=src, dest=staged, mode="600",
                            **context)
    return _install_checked(staged, dest, validate, mode, activate, render)


def validated_file(src: str, dest: str, validate: str, mode: str = "600", activate: str = "",
                   **op_args):
    """validated_template for a file copied as it is (a certificate, say)."""
    staged = _staged_path(dest)
    files.directory(name=f"Staging directory for {dest}", path=STAGING_DIR, mode="700")
    upload = files.put(name=f"Upload {dest} (staged)", src=src, dest=staged, mode="600",
                       **op_args)
    return _install_checked(staged, dest, validate, mode, activate, upload)


def _staged_path(dest: str) -> str:
    return f"{STAGING_DIR}/{dest.strip('/').replace('/', '__')}"


def _install_checked(staged: str, dest: str, validate: str, mode: str, activate: str, staging):
    script = f"""set -e
restore() {{
  if [ -e '{staged}.prev' ]; then mv '{staged}.prev' '{dest}'; else rm -f '{dest}'; fi
  rm -f '{staged}'
}}
if [ -e '{dest}' ]; then cp -p '{dest}' '{staged}.prev'; else rm -f '{staged}.prev'; fi
install -m {mode} '{staged}' '{dest}'
if ! out=$({validate} 2>&1); then
  restore
  echo "ha-webstack: '{validate}' rejected the new {dest}; the previous file is back in place" \
       "and the service was not reloaded. Checker output:" >&2
  echo "$out" >&2
  exit 1
fi
{_activation(activate, dest)}rm -f '{staged}.prev'"""
    label = f"Install {dest} after: {validate}" + (" then reload" if activate else "")
    # Read before this run renders: a staged copy that differs from the installed file was
    # never installed (or the file was edited since), so it is installed even if unchanged now.
    pending = host.get_fact(Sha1File, staged) not in (None, host.get_fact(Sha1File, dest))
    return server.shell(name=label, commands=[script],
                        _if=lambda: pending or staging.did_change())
