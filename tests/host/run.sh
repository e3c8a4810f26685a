#!/usr/bin/env bash
# Checks of the host program bin/aviary: scripts and their arguments, -e/-l/-v/-h,
# exit status and tracebacks, stdin scripts, module search paths, the aviary
# preload and, through a pseudo-terminal (pty_repl.py), the REPL.
#
#   HOST=bin/aviary tests/host/run.sh
#
# Prints `ok - name` / `not ok - name` per check, diagnostics after '#'; exits
# non-zero when a check fails.  Runs with AVIARY_NO_PRELOAD=1 so it does not
# need the tensor module; the one check that does is skipped without it.
# shellcheck disable=SC2016,SC2317  # conditions are quoted to be eval'd by expect
set -u
here=$(cd "$(dirname "$0")" && pwd)
HOST=${HOST:-bin/aviary}
case $HOST in */*) ;; *) HOST=$(command -v "$HOST" || echo "$HOST") ;; esac
HOST=$(cd "$(dirname "$HOST")" 2>/dev/null && pwd)/$(basename "$HOST")
if [ ! -x "$HOST" ]; then
	echo "not ok - host program exists # $HOST is not executable"
	exit 1
fi
PYTHON=/usr/bin/python3

tmp=$(cd "$(mktemp -d)" && pwd -P) # physical: the host resolves its own path
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
unset LUA_INIT LUA_INIT_5_4 LUA_PATH LUA_PATH_5_4 LUA_CPATH LUA_CPATH_5_4
export AVIARY_NO_PRELOAD=1 AVIARY_HISTORY=$tmp/history
failed=0
rc=0

# run CMD...: runs it with stdout in $tmp/out, stderr in $tmp/err, status in $rc
run() {
	"$@" >"$tmp/out" 2>"$tmp/err" </dev/null
	rc=$?
}

# expect NAME CONDITION: CONDITION is a shell test on the last run
expect() {
	if eval "$2"; then
		echo "ok - $1"
	else
		echo "not ok - $1"
		failed=1
		echo "#   condition: $2"
		echo "#   status: $rc"
		sed 's/^/#   stdout: /' "$tmp/out"
		sed 's/^/#   stderr: /' "$tmp/err"
	fi
}

line() { sed -n "${1}p" "$tmp/out"; }

# ---- scripts and arguments ---------------------------------------------------

cat >args.lua <<'EOF'
local t = {}
for i = -3, #arg do t[#t + 1] = i .. "=" .. tostring(arg[i]) end
print(table.concat(t, " "))
print(select("#", ...), ...)
EOF
run "$HOST" args.lua a "b c"
expect "script sees arg as lua5.4 sets it" \
	'[ $rc = 0 ] && [ "$(line 1)" = "-3=nil -2=nil -1=$HOST 0=args.lua 1=a 2=b c" ]'
expect "script gets its arguments as ..." '[ "$(line 2)" = "2	a	b c" ]'

run "$HOST" -e "x = 1" args.lua a
expect "interpreter and options get negative arg indices" \
	'[ "$(line 1)" = "-3=$HOST -2=-e -1=x = 1 0=args.lua 1=a" ]'

run "$HOST" -- args.lua -e
expect "-- ends the options" '[ $rc = 0 ] && [ "$(line 2)" = "1	-e" ]'

run "$HOST" -e 'io.write("a")' -e 'io.write("b")' -e'print("c")'
expect "-e runs each statement in order" '[ $rc = 0 ] && [ "$(cat out)" = abc ]'

run "$HOST" -e 'os.exit(7)'
expect "os.exit sets the exit status" '[ $rc = 7 ]'

# ---- errors --------------------------------------------------------------------

cat >bad.lua <<'EOF'
local function inner() error("boom") end
inner()
EOF
run "$HOST" bad.lua
expect "script error exits with status 1" '[ $rc = 1 ] && [ ! -s out ]'
expect "script error is reported with the program name" \
	'[ "$(head -n 1 err)" = "$HOST: bad.lua:1: boom" ]'
expect "script error has a traceback on stderr" \
	'grep -q "^stack traceback:" err && grep -q "in .*inner" err'

echo 'x = = 1' >syntax.lua
run "$HOST" syntax.lua
expect "syntax error exits with status 1" '[ $rc = 1 ] && grep -q "syntax.lua:1:" err'

run "$HOST" no-such-file.lua
expect "missing script exits with status 1" '[ $rc = 1 ] && grep -q "cannot open no-such-file.lua" err'

run "$HOST" -e 'error("first")' -e 'print("second")'
expect "-e error stops the run with status 1" \
	'[ $rc = 1 ] && grep -q "(command line):1: first" err && [ ! -s out ]'

run "$HOST" -e 'error({})'
expect "non-string error objects are described" '[ $rc = 1 ] && grep -q "error object is a table value" err'

run "$HOST" -x
expect "unknown option exits 1 with usage on stderr" '[ $rc = 1 ] && grep -q "^usage:" err'

run "$HOST" -e
expect "-e without a statement exits 1" '[ $rc = 1 ] && grep -q "^usage:" err'

if [ -x "$PYTHON" ]; then
	run "$PYTHON" -c '
import signal, subprocess, sys, time
p = subprocess.Popen([sys.argv[1], "-e", "while true do end"], stderr=subprocess.PIPE)
# on a loaded machine the first signal may come before the host is ready for it: repeat, and
# never leave the child spinning
err = None
for _ in range(20):
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    try:
        err = p.communicate(timeout=1)[1].decode()
        break
    except subprocess.TimeoutExpired:
        pass
if err is None:
    p.kill()
    err = p.communicate()[1].decode()
sys.stderr.write(err)
sys.exit(p.returncode)' "$HOST"
	expect "Ctrl-C interrupts a running script" '[ $rc = 1 ] && grep -q "interrupted!" err'
else
	echo "ok - Ctrl-C interrupts a running script # SKIP no $PYTHON"
fi

# ---- stdin ----------------------------------------------------------------------

echo 'print("from stdin", ...)' >stdin.lua
"$HOST" - x y <stdin.lua >out 2>err
rc=$?
expect "- runs stdin as the script" '[ $rc = 0 ] && [ "$(cat out)" = "from stdin	x	y" ]'

"$HOST" <stdin.lua >out 2>err
rc=$?
expect "stdin that is not a terminal runs as a script" '[ $rc = 0 ] && [ "$(cat out)" = "from stdin" ]'

echo 'error("in stdin")' | "$HOST" - >out 2>err
rc=$?
expect "stdin script error exits 1" '[ $rc = 1 ] && grep -q "stdin:1: in stdin" err'

printf '1 + 1\nt = {1,\n2}\nprint(#t)\n' | "$HOST" -i >out 2>err
rc=$?
expect "-i with piped input reads it as REPL lines" \
	'[ $rc = 0 ] && [ "$(line 2)" = "av> 2" ] && [ "$(line 3)" = "av> >> av> 2" ]'

# ---- other options ----------------------------------------------------------------

mkdir -p mods/pkg
echo 'return {hi = "hello"}' >mods/greet.lua
echo 'return {x = 42}' >mods/pkg/sub.lua
run env LUA_PATH="$tmp/mods/?.lua;;" "$HOST" -l greet -l g=greet -l pkg.sub \
	-e 'print(greet.hi, g.hi, sub.x)'
expect "-l requires modules into globals" '[ $rc = 0 ] && [ "$(cat out)" = "hello	hello	42" ]'

run env LUA_PATH="$tmp/mods/?.lua" "$HOST" -e 'print(require("greet").hi)'
expect "LUA_PATH is honoured" '[ $rc = 0 ] && [ "$(cat out)" = hello ]'

run env LUA_INIT='init_ran = true' "$HOST" -e 'print(init_ran)'
expect "LUA_INIT runs first" '[ "$(cat out)" = true ]'
run env LUA_INIT='init_ran = true' "$HOST" -E -e 'print(init_ran)'
expect "-E ignores LUA_INIT" '[ "$(cat out)" = nil ]'

run "$HOST" -v
expect "-v prints the version" '[ $rc = 0 ] && grep -q "^aviary [0-9]" out'

run "$HOST" -h
expect "-h prints usage naming AVIARY_NO_PRELOAD" '[ $rc = 0 ] && grep -q AVIARY_NO_PRELOAD out'

# ---- module search paths (copies of the host in made-up layouts) ------------------

paths() { run "$1" -e 'print(package.path) print(package.cpath)'; }

# a build directory holds a lua/aviary of its own (core.so): it must not pass
# for the source tree
mkdir -p src/bin src/lua/aviary src/build-asan/bin src/build-asan/lua/aviary loose pfx/bin \
	pfx/share/lua/5.4
echo 'return {fake = true}' >src/lua/aviary/init.lua
cp "$HOST" src/bin/aviary
cp "$HOST" src/build-asan/bin/aviary
cp "$HOST" loose/aviary
cp "$HOST" pfx/bin/aviary
ln -s "$tmp/src/bin/aviary" linked-aviary

paths src/bin/aviary
expect "source tree: lua/ is searched first" \
	'[[ $(line 1) == "$tmp/src/lua/?.lua;$tmp/src/lua/?/init.lua;"* ]]'
expect "source tree: build/lua is searched first for C modules" \
	'[[ $(line 2) == "$tmp/src/build/lua/?.so;"* ]]'

paths src/build-asan/bin/aviary
expect "build directory: its tree's lua/ is searched first" \
	'[[ $(line 1) == "$tmp/src/lua/?.lua;$tmp/src/lua/?/init.lua;"* ]]'
expect "build directory: its lua/ is searched first for C modules" \
	'[[ $(line 2) == "$tmp/src/build-asan/lua/?.so;"* ]]'

paths ./linked-aviary
expect "a symlink to the host finds the real tree" \
	'[[ $(line 1) == "$tmp/src/lua/?.lua;"* ]]'

paths pfx/bin/aviary
expect "install prefix: share/lua/5.4 is searched first" \
	'[[ $(line 1) == "$tmp/pfx/share/lua/5.4/?.lua;$tmp/pfx/share/lua/5.4/?/init.lua;"* ]]'
expect "install prefix: lib/lua/5.4 is searched first for C modules" \
	'[[ $(line 2) == "$tmp/pfx/lib/lua/5.4/?.so;"* ]]'

paths loose/aviary
expect "elsewhere: no paths added, no failure" '[ $rc = 0 ] && ! grep -q "$tmp" out'

run env LUA_PATH="$tmp/mods/?.lua;;" src/bin/aviary -e 'print(package.path)'
expect "LUA_PATH entries stay, after the project's" \
	'[[ $(line 1) == "$tmp/src/lua/?.lua;"*"$tmp/mods/?.lua;"* ]]'

# ---- preloading aviary --------------------------------------------------------------

run env -u AVIARY_NO_PRELOAD src/bin/aviary -e 'print(av.fake, av == require "aviary")'
expect "aviary is preloaded as the global av" '[ $rc = 0 ] && [ "$(cat out)" = "true	true" ]'

run env -u AVIARY_NO_PRELOAD LUA_PATH="$tmp/none/?.lua" LUA_CPATH="$tmp/none/?.so" \
	loose/aviary -e 'print("ran")'
expect "a missing aviary module exits 1 before running anything" \
	'[ $rc = 1 ] && [ ! -s out ] && grep -q "cannot load the aviary module" err && grep -q AVIARY_NO_PRELOAD err'

with_aviary=
if env -u AVIARY_NO_PRELOAD "$HOST" -e 'require "aviary"' >/dev/null 2>&1; then
	with_aviary=with-aviary
	run env -u AVIARY_NO_PRELOAD "$HOST" -e 'assert(av ~= nil and av == require "aviary") print("ok")'
	expect "real aviary module is preloaded as av" '[ $rc = 0 ] && [ "$(cat out)" = ok ]'
else
	echo "ok - real aviary module is preloaded as av # SKIP no aviary module"
fi

# ---- the REPL ------------------------------------------------------------------------

if [ -x "$PYTHON" ]; then
	mkdir -p docs/aviary
	cat >docs/aviary/doc.lua <<'EOF'
return {
	["av.testfn"] = "testfn(x) doubles x",
	["Tensor:sum"] = "x:sum() -> sum of all elements",
	["av.nameless"] = "does something",
}
EOF
	"$PYTHON" "$here/pty_repl.py" "$HOST" "$tmp/docs" "$tmp/history" $with_aviary || failed=1
else
	echo "ok - repl # SKIP no $PYTHON"
fi

exit $failed
