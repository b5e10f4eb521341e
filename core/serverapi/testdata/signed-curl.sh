#!/usr/bin/env bash
# A signed server API request with curl (README.md, "Signing"); needs
# openssl and sha256sum. Against `longlink dev`: APPKEY=demo, SECRET is
# app_secret in .longlink/dev.json, API=http://127.0.0.1:7712.
set -euo pipefail
: "${API:=http://127.0.0.1:7712}" "${APPKEY:=demo}"
SECRET=${SECRET:-$(sed -n 's/.*"app_secret": "\(.*\)".*/\1/p' .longlink/dev.json)}
METHOD=POST
TARGET=/v1/users
BODY='{"account":"dave","name":"Dave"}'
TS=$(date +%s)
NONCE=$(openssl rand -hex 16)
BODY_SHA=$(printf '%s' "$BODY" | sha256sum | cut -d' ' -f1)
CHECKSUM=$(printf '%s\n%s\n%s\n%s\n%s' "$METHOD" "$TARGET" "$TS" "$NONCE" "$BODY_SHA" |
  openssl dgst -sha256 -hmac "$SECRET" | sed 's/.*= //')
curl -sS --fail-with-body -X "$METHOD" "$API$TARGET" \
  -H "X-Longlink-AppKey: $APPKEY" -H "X-Longlink-Timestamp: $TS" \
  -H "X-Longlink-Nonce: $NONCE" -H "X-Longlink-Checksum: $CHECKSUM" \
  -H 'Content-Type: application/json' --data-binary "$BODY"
