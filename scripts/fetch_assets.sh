#!/usr/bin/env bash
# Fetch the site's JavaScript from the npm registry into book/_vendor (not committed), so that
# the built website serves everything itself and works offline: no CDN at reading time.
set -euo pipefail
cd "$(dirname "$0")/../book"
MATHJAX_VERSION=3.2.2
target=_vendor/mathjax
if [ -f "$target/.version" ] && [ "$(cat "$target/.version")" = "$MATHJAX_VERSION" ]; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "mathjax@$MATHJAX_VERSION" >/dev/null && tar xzf mathjax-*.tgz)
rm -rf "$target" && mkdir -p "$target/output/chtml/fonts"
cp "$work/package/es5/tex-chtml.js" "$target/"
cp -r "$work/package/es5/output/chtml/fonts/woff-v2" "$target/output/chtml/fonts/"
cp "$work/package/LICENSE" "$target/"
echo "$MATHJAX_VERSION" > "$target/.version"
echo "fetched MathJax $MATHJAX_VERSION into book/$target"
