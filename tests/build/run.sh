#!/usr/bin/env bash
# Build-level checks: stock lua5.4 finds aviary after `eval "$(make env)"`,
# `make install PREFIX=...` gives a working host and module, the documented
# one-liners work. Prints "ok -" / "not ok -" lines.
set -u
cd "$(dirname "$0")/../.."
HOST=${HOST:-bin/aviary}
check() { # name, command...
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then echo "ok - build: $name"
  else echo "not ok - build: $name"; printf '%s\n' "$out" | sed 's/^/#   /' | head -20; fi
}
skip() { echo "ok - build: $1 # SKIP $2"; }

check "bin/aviary -e prints a 2-element sum" bash -c \
  "$HOST -e 'local x = av.randn(2,3); print(x:sum(2))' | grep -q 'FloatTensor of size 2\]'"

if [ -n "${AV_SANITIZED:-}" ]; then
  skip "stock lua5.4 after make env" "stock lua5.4 cannot load a sanitizer build"
  skip "make install into a prefix" "sanitizer build"
  exit 0
fi

check "stock lua5.4 after make env" bash -c \
  'eval "$(make -s env)" && lua5.4 -e "local av = require \"aviary\"; print(av.ones(2,2))" | grep -q "FloatTensor of size 2x2"'

prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
check "make install into a prefix" make -s install PREFIX="$prefix"
check "installed aviary runs from its prefix" bash -c \
  "cd / && env -u LUA_PATH -u LUA_CPATH '$prefix/bin/aviary' -e 'print(av.arange(3):sum():item())' | grep -qx 3"
check "stock lua5.4 loads the installed module" bash -c \
  "cd / && LUA_PATH='$prefix/share/lua/5.4/?.lua;$prefix/share/lua/5.4/?/init.lua;;' LUA_CPATH='$prefix/lib/lua/5.4/?.so;;' \
   lua5.4 -e 'local av = require \"aviary\"; assert(av.zeros(3):numel() == 3); require \"aviary.nn.functional\"; require \"aviary.optim.lr_scheduler\"'"
