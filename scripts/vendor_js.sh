#!/usr/bin/env bash
# Refresh the JavaScript files vendored under static/vendor/ (run by `make vendor`, never by
# `make run` or `make test`: the results are committed). Bump a version below, run this, look at
# the diff, run `make test`, commit.
set -euo pipefail

HTMX_VERSION=2.0.11     # htmx.org, latest 2.0.x
HTMX_WS_VERSION=2.0.4   # htmx-ext-ws, latest 2.x
IDIOMORPH_VERSION=0.8.0 # idiomorph, latest (its htmx extension: the "morph" swap of live fragments)

cd "$(dirname "$0")/.."
dest=static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() {  # fetch NAME VERSION -> unpacks into $work/NAME/package
  local name=$1 version=$2
  mkdir -p "$work/$name"
  (cd "$work/$name" && npm pack --silent "$name@$version" >/dev/null && tar xzf ./*.tgz)
}

fetch htmx.org "$HTMX_VERSION"
fetch htmx-ext-ws "$HTMX_WS_VERSION"
fetch idiomorph "$IDIOMORPH_VERSION"

rm -rf "$dest/htmx"
mkdir -p "$dest/htmx"
cp "$work/htmx.org/package/dist/htmx.min.js" "$dest/htmx/htmx.min.js"
cp "$work/htmx.org/package/LICENSE" "$dest/htmx/LICENSE.htmx"
cp "$work/htmx-ext-ws/package/dist/ws.min.js" "$dest/htmx/ws.min.js"
cp "$work/htmx-ext-ws/package/LICENSE" "$dest/htmx/LICENSE.htmx-ext-ws"
# idiomorph-ext.min.js is idiomorph itself plus its htmx extension ("morph") in one file.
cp "$work/idiomorph/package/dist/idiomorph-ext.min.js" "$dest/htmx/idiomorph-ext.min.js"
cp "$work/idiomorph/package/LICENSE" "$dest/htmx/LICENSE.idiomorph"

license_of() {  # package.json's "license" field, else the first line of its LICENSE file
  python3 - "$1/package" <<'PY'
import json, pathlib, sys
package = pathlib.Path(sys.argv[1])
license = json.loads((package / "package.json").read_text()).get("license")
if not license:
    license = next(line for line in (package / "LICENSE").read_text().splitlines() if line.strip())
print(license.strip())
PY
}
htmx_license=$(license_of "$work/htmx.org")
ws_license=$(license_of "$work/htmx-ext-ws")
idiomorph_license=$(license_of "$work/idiomorph")

cat > "$dest/README.md" <<MD
# Vendored front-end files

Copied unmodified from the packages' published npm tarballs by \`make vendor\`
(\`scripts/vendor_js.sh\`, which pins the versions). They are committed so that PermitGame serves
every script itself and a page never loads anything from another host.

| file | package | version | licence |
|---|---|---|---|
| \`htmx/htmx.min.js\` | htmx.org (\`dist/htmx.min.js\`) | $HTMX_VERSION | $htmx_license (\`htmx/LICENSE.htmx\`) |
| \`htmx/ws.min.js\` | htmx-ext-ws (\`dist/ws.min.js\`) | $HTMX_WS_VERSION | $ws_license (\`htmx/LICENSE.htmx-ext-ws\`) |
| \`htmx/idiomorph-ext.min.js\` | idiomorph (\`dist/idiomorph-ext.min.js\`: idiomorph and its htmx extension) | $IDIOMORPH_VERSION | $idiomorph_license (\`htmx/LICENSE.idiomorph\`) |

To update: change the version at the top of \`scripts/vendor_js.sh\`, run \`make vendor\`, review the
diff, run \`make test\`, commit.
MD
echo "vendored into $dest:"
find "$dest" -type f | sort
