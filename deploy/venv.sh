# Sourced by the deploy scripts: makes target/deploy-venv with deploy/requirements.txt installed
# (again only when the requirements change) and sets $PY to its python.
_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${DEPLOY_VENV:-$_root/target/deploy-venv}
PY=$VENV/bin/python
if ! cmp -s "$_root/deploy/requirements.txt" "$VENV/requirements.txt" 2>/dev/null; then
  echo "deploy: installing Python tools into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$_root/deploy/requirements.txt"
  cp "$_root/deploy/requirements.txt" "$VENV/requirements.txt"
fi
unset _root
