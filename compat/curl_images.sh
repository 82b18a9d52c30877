#!/usr/bin/env bash
# Multipart image edits with plain curl, as a shell script user would send them.
#   compat/curl_images.sh http://127.0.0.1:8000
# Needs curl and python3 (to make the input PNGs and read the JSON). Exits non-zero on the first mismatch.
set -euo pipefail
URL="${1:-http://127.0.0.1:8000}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PY="${PYTHON:-python3}"

"$PY" - "$WORK" <<'PYEOF'
import sys
from PIL import Image
Image.new("RGB", (64, 64), (220, 40, 40)).save(f"{sys.argv[1]}/red.png")
Image.new("RGB", (96, 64), (40, 40, 220)).save(f"{sys.argv[1]}/blue.png")
PYEOF

check() {  # check FILE PYTHON-EXPRESSION-ON-body
  "$PY" -c "import json,sys; body=json.load(open(sys.argv[1])); assert $2, body" "$1"
}

# Two images as repeated image[] parts, string fields, an extension field.
status=$(curl -sS -o "$WORK/two.json" -w '%{http_code}' "$URL/v1/images/edits" \
  -F "image[]=@$WORK/red.png;type=image/png" -F "image[]=@$WORK/blue.png;type=image/png" \
  -F prompt="put the red square on the blue one" -F n=2 -F size=64x64 -F num_inference_steps=2 -F seed=1)
[ "$status" = 200 ] || { echo "multi-image edit: HTTP $status"; cat "$WORK/two.json"; exit 1; }
check "$WORK/two.json" 'len(body["data"]) == 2 and body["size"] == "64x64" and body["data"][0]["b64_json"]'
echo "edit with image[] x2: ok"

# One image under the plain name, size=auto (the input's size), JPEG output.
status=$(curl -sS -o "$WORK/one.json" -w '%{http_code}' "$URL/v1/images/edits" \
  -F "image=@$WORK/blue.png" -F prompt="make it red" -F size=auto -F output_format=jpeg \
  -F output_compression=80 -F num_inference_steps=2)
[ "$status" = 200 ] || { echo "single edit: HTTP $status"; cat "$WORK/one.json"; exit 1; }
check "$WORK/one.json" 'body["size"] == "96x64" and body["output_format"] == "jpeg"'
echo "edit with image, size=auto: ok"

# Streaming: SSE events ending in image_edit.completed and [DONE].
curl -sS -N "$URL/v1/images/edits" -F "image[]=@$WORK/red.png" -F prompt="make it blue" -F stream=true \
  -F partial_images=1 -F num_inference_steps=4 > "$WORK/stream.txt"
grep -q '"type":"image_edit.completed"' "$WORK/stream.txt" || { echo "stream: no completed event"; exit 1; }
tail -c 200 "$WORK/stream.txt" | grep -q 'data: \[DONE\]' || { echo "stream: no [DONE]"; exit 1; }
echo "streaming edit: ok"

# Bad input: a 400 in the OpenAI error shape that names the parameter.
status=$(curl -sS -o "$WORK/bad.json" -w '%{http_code}' "$URL/v1/images/edits" \
  -F "image=@$WORK/red.png" -F prompt=x -F size=65x64)
[ "$status" = 400 ] || { echo "bad size: HTTP $status"; exit 1; }
check "$WORK/bad.json" 'body["error"]["param"] == "size" and body["error"]["type"] == "invalid_request_error"'
echo "bad size refused: ok"
echo "all curl checks passed"
