/* bin/aviary: the Lua 5.4 interpreter people use with aviary.  It behaves
 * like lua5.4 for scripts and options, loads the aviary module as the global
 * `av` first, finds the project's modules without LUA_PATH, and offers a REPL
 * with completion, auto-printing, history and doc lookup. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef AVIARY_VERSION
#define AVIARY_VERSION "0.1.0"
#endif

#define HISTORY_MAX 1000
#define HELPERS_KEY "aviary.host.repl"
#define PROMPT "av> "
#define PROMPT_MORE ">> "

static const char *progname = "aviary";
/* The signal handler needs the state to set its hook on. */
static lua_State *main_state;

/* ---- errors ------------------------------------------------------------- */

static void print_message(const char *msg, int with_progname)
{
	if (with_progname)
		fprintf(stderr, "%s: ", progname);
	fprintf(stderr, "%s\n", msg);
	fflush(stderr);
}

/* Prints and pops the error on top of the stack when status is an error. */
static int report(lua_State *L, int status, int with_progname)
{
	if (status != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		print_message(msg ? msg : "(error object is not a string)", with_progname);
		lua_pop(L, 1);
	}
	return status;
}

static int traceback_handler(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);
	if (msg == NULL) {
		if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
			msg = lua_tostring(L, -1);
		else
			msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	}
	luaL_traceback(L, L, msg, 1);
	return 1;
}

/* ---- interrupting running code ------------------------------------------ */

static volatile sig_atomic_t interrupt_pending;

static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
	lua_sethook(L, NULL, 0, 0);
	interrupt_pending = 0;
	luaL_error(L, "interrupted!");
}

/* Only arms a hook: Lua cannot be entered from a signal handler, but
 * lua_sethook is safe to call from one.  SA_RESETHAND makes a second Ctrl-C
 * kill the process when the first cannot reach Lua (a long C kernel). */
static void on_sigint_while_running(int sig)
{
	interrupt_pending = 1;
	lua_sethook(main_state, interrupt_hook,
		    LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* Calls the function below the narg arguments with a traceback on error,
 * interruptible by Ctrl-C. */
static int docall(lua_State *L, int narg, int nres)
{
	int base = lua_gettop(L) - narg;
	struct sigaction sa = {0}, old;
	int status;

	lua_pushcfunction(L, traceback_handler);
	lua_insert(L, base);
	sa.sa_handler = on_sigint_while_running;
	sa.sa_flags = SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old);
	status = lua_pcall(L, narg, nres, base);
	sigaction(SIGINT, &old, NULL);
	if (interrupt_pending) {
		/* Ctrl-C came after the last Lua instruction: the armed hook
		 * would otherwise interrupt whatever runs next. */
		lua_sethook(L, NULL, 0, 0);
		interrupt_pending = 0;
	}
	lua_remove(L, base);
	return status;
}

static int run_chunk(lua_State *L, int status)
{
	if (status == LUA_OK)
		status = docall(L, 0, 0);
	return report(L, status, 1) == LUA_OK;
}

static int run_string(lua_State *L, const char *code, const char *chunkname)
{
	return run_chunk(L, luaL_loadbuffer(L, code, strlen(code), chunkname));
}

/* ---- module search paths ------------------------------------------------ */

struct layout {
	char root[PATH_MAX];   /* source tree holding lua/aviary, "" if none */
	char build[PATH_MAX];  /* its build directory (holds lua/aviary/core.so) */
	char prefix[PATH_MAX]; /* install prefix holding share/lua/5.4, "" if none */
};

static int is_dir(const char *dir, const char *sub)
{
	char path[PATH_MAX + 64];
	struct stat st;
	if (snprintf(path, sizeof path, "%s%s", dir, sub) >= (int)sizeof path)
		return 0;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Drops the last component of path in place; 0 when there is none. */
static int strip_component(char *path)
{
	char *slash = strrchr(path, '/');
	if (slash == NULL)
		return 0;
	*slash = '\0';
	return 1;
}

/* The executable is <dir>/bin/aviary; <dir> is a source tree (bin/aviary
 * built into build/), a build directory inside one (build-asan/bin/aviary),
 * or an install prefix.  Anything else gets no extra paths. */
static void find_layout(const char *argv0, struct layout *lo)
{
	char dir[PATH_MAX], parent[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
	const char *base;

	lo->root[0] = lo->build[0] = lo->prefix[0] = '\0';
	if (n > 0)
		dir[n] = '\0';
	else if (strchr(argv0, '/') == NULL || realpath(argv0, dir) == NULL)
		return;
	if (!strip_component(dir))
		return;
	base = strrchr(dir, '/');
	if (base == NULL || strcmp(base + 1, "bin") != 0)
		return;
	strip_component(dir);
	if (is_dir(dir, "/lua/aviary")) {
		snprintf(lo->root, sizeof lo->root, "%s", dir);
		if (strlen(dir) + 6 < sizeof lo->build)
			sprintf(lo->build, "%s/build", dir);
	} else {
		memcpy(parent, dir, sizeof parent);
		if (strip_component(parent) && is_dir(parent, "/lua/aviary")) {
			snprintf(lo->root, sizeof lo->root, "%s", parent);
			snprintf(lo->build, sizeof lo->build, "%s", dir);
		}
	}
	if (is_dir(dir, "/share/lua/5.4") || is_dir(dir, "/lib/lua/5.4"))
		snprintf(lo->prefix, sizeof lo->prefix, "%s", dir);
}

/* Puts the pushed string in front of package[field]. */
static void prepend_to_package(lua_State *L, const char *field)
{
	lua_getglobal(L, "package");
	lua_getfield(L, -1, field);
	lua_pushfstring(L, "%s%s", lua_tostring(L, -3), lua_tostring(L, -1));
	lua_setfield(L, -3, field);
	lua_pop(L, 3);
}

static void add_search_paths(lua_State *L, const char *argv0)
{
	struct layout lo;
	find_layout(argv0, &lo);
	if (lo.root[0] == '\0' && lo.prefix[0] == '\0')
		return;
	lua_pushliteral(L, "");
	if (lo.root[0])
		lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;", lo.root, lo.root);
	if (lo.prefix[0])
		lua_pushfstring(L, "%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua;",
				lo.prefix, lo.prefix);
	lua_concat(L, 1 + !!lo.root[0] + !!lo.prefix[0]);
	prepend_to_package(L, "path");
	lua_pushliteral(L, "");
	if (lo.build[0])
		lua_pushfstring(L, "%s/lua/?.so;", lo.build);
	if (lo.prefix[0])
		lua_pushfstring(L, "%s/lib/lua/5.4/?.so;", lo.prefix);
	lua_concat(L, 1 + !!lo.build[0] + !!lo.prefix[0]);
	prepend_to_package(L, "cpath");
}

/* ---- command line ------------------------------------------------------- */

struct options {
	int interactive, version, help, no_env, warnings, has_e;
	int script;           /* argv index of the script, 0 when none */
	const char *bad;      /* the offending argument when parsing failed */
};

static void print_usage(FILE *out)
{
	fprintf(out,
		"usage: %s [options] [script [args]]\n"
		"Lua 5.4 with the aviary module loaded as the global `av`.\n"
		"  -e stat   run the Lua statement stat (may repeat)\n"
		"  -i        open the REPL after running script and -e\n"
		"  -l mod    require mod into a global named after its last part\n"
		"            (-l g=mod: into global g)\n"
		"  -v        print version information\n"
		"  -E        ignore the LUA_* environment variables\n"
		"  -W        turn warnings on\n"
		"  -h        print this help\n"
		"  --        stop handling options\n"
		"  -         run stdin as the script\n"
		"Without a script, a terminal on stdin opens the REPL (type :help\n"
		"there) and any other stdin runs as a script.\n"
		"Environment:\n"
		"  AVIARY_NO_PRELOAD=1  start without loading aviary (no global av)\n"
		"  AVIARY_HISTORY       REPL history file (default ~/.aviary_history)\n"
		"  LUA_PATH, LUA_CPATH, LUA_INIT  as for lua5.4; the project's own\n"
		"            module directories are searched first\n",
		progname);
}

static int parse_args(int argc, char **argv, struct options *o)
{
	int i;
	memset(o, 0, sizeof *o);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || a[1] == '\0')
			break; /* the script, or "-" for stdin */
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (strchr("ivEWh", a[1]) && a[2] != '\0') {
			o->bad = a;
			return 0;
		}
		switch (a[1]) {
		case 'i': o->interactive = 1; break;
		case 'v': o->version = 1; break;
		case 'E': o->no_env = 1; break;
		case 'W': o->warnings = 1; break;
		case 'h': o->help = 1; break;
		case 'e':
		case 'l':
			o->has_e |= a[1] == 'e';
			if (a[2] == '\0' && ++i >= argc) {
				o->bad = a;
				return 0;
			}
			break;
		default:
			o->bad = a;
			return 0;
		}
	}
	o->script = i < argc ? i : 0;
	return 1;
}

/* arg[0] is the script, arguments after it count up from 1 and the
 * interpreter and its options count down, exactly as lua5.4 sets them. */
static void set_arg_table(lua_State *L, int argc, char **argv, int script)
{
	lua_createtable(L, argc, script + 1);
	for (int i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i - script);
	}
	lua_setglobal(L, "arg");
}

static int run_library(lua_State *L, const char *spec)
{
	const char *eq = strchr(spec, '=');
	const char *module = eq ? eq + 1 : spec;
	const char *dot = strrchr(module, '.');
	int status;

	if (eq)
		lua_pushlstring(L, spec, (size_t)(eq - spec));
	else
		lua_pushstring(L, dot ? dot + 1 : module);
	lua_getglobal(L, "require");
	lua_pushstring(L, module);
	status = docall(L, 1, 1);
	if (status == LUA_OK)
		lua_setglobal(L, lua_tostring(L, -2));
	else
		lua_remove(L, -2);
	lua_pop(L, status == LUA_OK);
	return report(L, status, 1) == LUA_OK;
}

/* Runs the -e and -l options in the order given; stops at the first error. */
static int run_options(lua_State *L, int argc, char **argv, int script)
{
	int end = script ? script : argc;
	for (int i = 1; i < end; i++) {
		char opt = argv[i][0] == '-' ? argv[i][1] : '\0';
		const char *value;
		if (opt != 'e' && opt != 'l')
			continue;
		value = argv[i][2] ? argv[i] + 2 : argv[++i];
		if (opt == 'e' ? !run_string(L, value, "=(command line)")
			       : !run_library(L, value))
			return 0;
	}
	return 1;
}

static int run_script(lua_State *L, int argc, char **argv, int script)
{
	const char *name = argv[script];
	int status;
	if (strcmp(name, "-") == 0 && strcmp(argv[script - 1], "--") != 0)
		name = NULL; /* stdin */
	status = luaL_loadfile(L, name);
	if (status == LUA_OK) {
		luaL_checkstack(L, argc, "too many arguments to script");
		for (int i = script + 1; i < argc; i++)
			lua_pushstring(L, argv[i]);
		status = docall(L, argc - script - 1, 0);
	}
	return report(L, status, 1) == LUA_OK;
}

static int run_lua_init(lua_State *L)
{
	const char *name = "=LUA_INIT_5_4";
	const char *init = getenv(name + 1);
	if (init == NULL) {
		name = "=LUA_INIT";
		init = getenv(name + 1);
	}
	if (init == NULL)
		return 1;
	if (init[0] == '@')
		return run_chunk(L, luaL_loadfile(L, init + 1));
	return run_string(L, init, name);
}

static int preload_aviary(lua_State *L)
{
	const char *skip = getenv("AVIARY_NO_PRELOAD");
	if (skip && skip[0] && strcmp(skip, "0") != 0)
		return 1;
	lua_getglobal(L, "require");
	lua_pushliteral(L, "aviary");
	if (docall(L, 1, 1) != LUA_OK) {
		fprintf(stderr, "%s: cannot load the aviary module: %s\n"
			"(set AVIARY_NO_PRELOAD=1 to start without it)\n",
			progname, lua_tostring(L, -1));
		lua_pop(L, 1);
		return 0;
	}
	lua_setglobal(L, "av");
	return 1;
}

/* ---- REPL helpers ----------------------------------------------------------
 * Formatting values, completion candidates and doc lookup are table walks,
 * far shorter and safer in Lua; they live in the registry, not in _G, and
 * capture the library functions they use so user code cannot break them. */

static const char repl_helpers[] =
	"local G = ...\n"
	"local getmetatable, next, pcall, rawget, select, tostring, type ="
	"  debug.getmetatable, next, pcall, rawget, select, tostring, type\n"
	"local concat, sort, format, mathtype = table.concat, table.sort, string.format, math.type\n"
	"local keywords = {}\n"
	"for w in ('and break do else elseif end false for function goto if in '..\n"
	"  'local nil not or repeat return then true until while'):gmatch('%a+') do\n"
	"  keywords[w] = true\n"
	"end\n"
	"local function ident(s)\n"
	"  return type(s) == 'string' and s:match('^[%a_][%w_]*$') ~= nil and not keywords[s]\n"
	"end\n"
	"local function index(v, k) return v[k] end\n"
	/* "a.b:c" to its value, nil when a step fails */
	"local function resolve(path)\n"
	"  local v = G\n"
	"  for name in path:gmatch('[^.:]+') do\n"
	"    if not ident(name) then return nil end\n"
	"    local ok, r = pcall(index, v, name)\n"
	"    if not ok or r == nil then return nil end\n"
	"    v = r\n"
	"  end\n"
	"  return v\n"
	"end\n"
	"local function metafield(v, k)\n"
	"  local mt = getmetatable(v)\n"
	"  return type(mt) == 'table' and rawget(mt, k) or nil\n"
	"end\n"
	"local function callable(v)\n"
	"  return type(v) == 'function' or metafield(v, '__call') ~= nil\n"
	"end\n"
	/* the value's own fields, then its __index tables and `methods` tables,
	 * each visited once so metatable cycles end */
	"local function gather(v, methods, out, seen)\n"
	"  if seen[v] then return end\n"
	"  seen[v] = true\n"
	"  if type(v) == 'table' then\n"
	"    for k, x in next, v do\n"
	"      if ident(k) and (not methods or callable(x)) then out[k] = true end\n"
	"    end\n"
	"  end\n"
	"  local idx = metafield(v, '__index')\n"
	"  for _, holder in next, {getmetatable(v) or false, idx or false} do\n"
	"    local m = type(holder) == 'table' and rawget(holder, 'methods')\n"
	"    if type(m) == 'table' then gather(m, methods, out, seen) end\n"
	"  end\n"
	"  if type(idx) == 'table' then gather(idx, methods, out, seen) end\n"
	"end\n"
	"local function complete(text)\n"
	"  local path, sep, part = text:match('^(.-)([.:])([%w_]*)$')\n"
	"  local out, list = {}, {}\n"
	"  if path == nil then\n"
	"    part, path, sep = text, '', ''\n"
	"    gather(G, false, out, {})\n"
	"    for k in next, keywords do out[k] = true end\n"
	"  else\n"
	"    local v = path ~= '' and resolve(path)\n"
	"    if v == nil or v == false then return list end\n"
	"    gather(v, sep == ':', out, {})\n"
	"  end\n"
	"  for k in next, out do\n"
	"    if k:sub(1, #part) == part then list[#list + 1] = path .. sep .. k end\n"
	"  end\n"
	"  sort(list)\n"
	"  return list\n"
	"end\n"
	"local function one_line(s)\n"
	"  local first = s:match('^[^\\n]*')\n"
	"  return #first < #s and first .. ' ...' or s\n"
	"end\n"
	"local function plain_table(v)\n"
	"  return type(v) == 'table' and metafield(v, '__tostring') == nil\n"
	"end\n"
	"local function brief(v)\n"
	"  if type(v) == 'string' then\n"
	"    if #v > 40 then v = v:sub(1, 37) .. '...' end\n"
	"    return (format('%q', v):gsub('\\n', 'n'))\n"
	"  end\n"
	"  if plain_table(v) then return '{...}' end\n"
	"  return one_line(G.tostring(v))\n"
	"end\n"
	"local function key_order(a, b)\n"
	"  local ta, tb = type(a), type(b)\n"
	"  if ta ~= tb then return ta < tb end\n"
	"  if ta == 'number' or ta == 'string' then return a < b end\n"
	"  return tostring(a) < tostring(b)\n"
	"end\n"
	/* one level, array part first, then keys sorted so output is stable */
	"local function summary(t)\n"
	"  local items, width, full = {}, 0, false\n"
	"  local function add(s)\n"
	"    if #items > 0 and (#items >= 20 or width + #s > 120) then full = true return end\n"
	"    items[#items + 1] = s\n"
	"    width = width + #s + 2\n"
	"  end\n"
	"  local n = 0\n"
	"  while not full and rawget(t, n + 1) ~= nil do\n"
	"    n = n + 1\n"
	"    add(brief(rawget(t, n)))\n"
	"  end\n"
	"  local keys = {}\n"
	"  for k in next, t do\n"
	"    if full or #keys >= 200 then break end\n"
	"    if not (mathtype(k) == 'integer' and k >= 1 and k <= n) then keys[#keys + 1] = k end\n"
	"  end\n"
	"  sort(keys, key_order)\n"
	"  for _, k in next, keys do\n"
	"    if full then break end\n"
	"    add((ident(k) and k or '[' .. brief(k) .. ']') .. '=' .. brief(rawget(t, k)))\n"
	"  end\n"
	"  return '{' .. concat(items, ', ') .. (full and ', ...}' or '}')\n"
	"end\n"
	"local function show(...)\n"
	"  local parts = {}\n"
	"  for i = 1, select('#', ...) do\n"
	"    local v = select(i, ...)\n"
	"    parts[i] = plain_table(v) and summary(v) or G.tostring(v)\n"
	"  end\n"
	"  return concat(parts, '\\t')\n"
	"end\n"
	"local function help(name)\n"
	"  local ok, doc = pcall(G.require, 'aviary.doc')\n"
	"  local lines = {}\n"
	"  if ok and type(doc) == 'table' then\n"
	"    local tail = name:match('[.:]([%a_][%w_]*)$') or name\n"
	"    for _, key in next, {name, 'av.' .. name, 'Tensor:' .. tail} do\n"
	"      local found, text = pcall(index, doc, key)\n"
	"      if found and text ~= nil then return key .. ': ' .. tostring(text) end\n"
	"    end\n"
	"  elseif not ok and not tostring(doc):find(\"module 'aviary.doc' not found\", 1, true) then\n"
	"    lines[1] = '(aviary.doc failed to load: ' .. one_line(tostring(doc)) .. ')'\n"
	"  end\n"
	"  local v = resolve(name)\n"
	"  local kind = v ~= nil and (metafield(v, '__name') or type(v))\n"
	"  lines[#lines + 1] = 'no help for ' .. name .. (kind and ' (' .. tostring(kind) .. ')' or '')\n"
	"  return concat(lines, '\\n')\n"
	"end\n"
	"return {complete = complete, show = show, help = help}\n";

static void load_repl_helpers(lua_State *L)
{
	if (luaL_loadbuffer(L, repl_helpers, sizeof repl_helpers - 1, "=repl") != LUA_OK)
		lua_error(L); /* a bug in the text above */
	lua_pushglobaltable(L);
	lua_call(L, 1, 1);
	lua_setfield(L, LUA_REGISTRYINDEX, HELPERS_KEY);
}

/* Pushes helper `name` below the nargs values on top of the stack. */
static void push_helper(lua_State *L, const char *name, int nargs)
{
	lua_getfield(L, LUA_REGISTRYINDEX, HELPERS_KEY);
	lua_getfield(L, -1, name);
	lua_remove(L, -2);
	lua_insert(L, -1 - nargs);
}

/* ---- reading lines -------------------------------------------------------- */

enum { LINE_OK, LINE_EOF, LINE_INTERRUPTED };

static volatile sig_atomic_t prompt_sigint, prompt_sigwinch;
static char *accepted_line;
static int line_accepted;
static char *history_file; /* NULL when history is not saved */

static void on_prompt_signal(int sig)
{
	if (sig == SIGINT)
		prompt_sigint = 1;
	else
		prompt_sigwinch = 1;
}

static void on_line_accepted(char *line)
{
	accepted_line = line;
	line_accepted = 1;
	rl_callback_handler_remove(); /* or readline prompts again at once */
}

/* readline's callback interface, so a Ctrl-C at the prompt can abandon the
 * line cleanly from this loop rather than by jumping out of a handler. */
static int read_tty_line(const char *prompt, char **line)
{
	struct sigaction sa = {0}, old_int, old_winch;
	sigset_t blocked, unblocked;
	int result = LINE_OK, fd = fileno(rl_instream);

	sa.sa_handler = on_prompt_signal; /* no SA_RESTART: pselect must wake */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGWINCH, &sa, &old_winch);
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGINT);
	sigaddset(&blocked, SIGWINCH);
	/* blocked between the flag checks and pselect, so none is missed */
	sigprocmask(SIG_BLOCK, &blocked, &unblocked);
	prompt_sigint = 0;
	line_accepted = 0;
	rl_callback_handler_install(prompt, on_line_accepted);
	while (!line_accepted) {
		fd_set fds;
		if (prompt_sigint) {
			rl_free_line_state();
			rl_callback_sigcleanup();
			rl_cleanup_after_signal();
			rl_callback_handler_remove();
			fputs("^C\n", rl_outstream);
			result = LINE_INTERRUPTED;
			break;
		}
		if (prompt_sigwinch) {
			prompt_sigwinch = 0;
			rl_resize_terminal();
		}
		FD_ZERO(&fds);
		FD_SET(fd, &fds);
		if (pselect(fd + 1, &fds, NULL, NULL, NULL, &unblocked) > 0) {
			sigprocmask(SIG_SETMASK, &unblocked, NULL);
			rl_callback_read_char();
			sigprocmask(SIG_BLOCK, &blocked, NULL);
		} else if (errno != EINTR) {
			rl_callback_handler_remove();
			accepted_line = NULL;
			break;
		}
	}
	sigprocmask(SIG_SETMASK, &unblocked, NULL);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGWINCH, &old_winch, NULL);
	if (result == LINE_OK && accepted_line == NULL)
		result = LINE_EOF;
	*line = result == LINE_OK ? accepted_line : NULL;
	return result;
}

static int read_plain_line(const char *prompt, char **line)
{
	size_t cap = 0;
	ssize_t n;
	fputs(prompt, stdout);
	fflush(stdout);
	*line = NULL;
	n = getline(line, &cap, stdin);
	if (n < 0) {
		free(*line);
		*line = NULL;
		return LINE_EOF;
	}
	if (n > 0 && (*line)[n - 1] == '\n')
		(*line)[n - 1] = '\0';
	return LINE_OK;
}

static void history_start(void)
{
	const char *env = getenv("AVIARY_HISTORY"), *home = getenv("HOME");
	int fd;
	if (env && env[0])
		history_file = strdup(env);
	else if (home && home[0] && (history_file = malloc(strlen(home) + 18)))
		sprintf(history_file, "%s/.aviary_history", home);
	if (history_file == NULL)
		return;
	stifle_history(HISTORY_MAX);
	read_history(history_file);
	/* append_history needs an existing file; an unwritable one means
	 * history is kept for this session only */
	fd = open(history_file, O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (fd < 0) {
		free(history_file);
		history_file = NULL;
		return;
	}
	close(fd);
	history_truncate_file(history_file, HISTORY_MAX);
}

static void history_remember(const char *line)
{
	HIST_ENTRY *last = history_length > 0
		? history_get(history_base + history_length - 1) : NULL;
	if (line[strspn(line, " \t")] == '\0' || (last && strcmp(last->line, line) == 0))
		return;
	add_history(line);
	if (history_file)
		append_history(1, history_file);
}

static int read_line(int tty, const char *prompt, char **line)
{
	int result = tty ? read_tty_line(prompt, line) : read_plain_line(prompt, line);
	if (result == LINE_OK && tty)
		history_remember(*line);
	return result;
}

/* ---- completion ------------------------------------------------------------ */

static lua_State *repl_state;
static int candidates_index; /* stack slot of the candidate list */
static int candidates_next;

static char *next_candidate(const char *text, int state)
{
	const char *s;
	char *copy;
	if (state == 0)
		candidates_next = 0;
	lua_rawgeti(repl_state, candidates_index, ++candidates_next);
	s = lua_tostring(repl_state, -1);
	copy = s ? strdup(s) : NULL;
	lua_pop(repl_state, 1);
	return copy;
}

static char **complete_lua(const char *text, int start, int end)
{
	lua_State *L = repl_state;
	int top = lua_gettop(L);
	char **matches = NULL;
	if (rl_completion_quote_character)
		return NULL; /* inside a string: readline completes file names */
	rl_attempted_completion_over = 1;
	rl_completion_append_character = '\0';
	lua_pushstring(L, text);
	push_helper(L, "complete", 1);
	if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
		candidates_index = lua_gettop(L);
		matches = rl_completion_matches(text, next_candidate);
	}
	lua_settop(L, top);
	return matches;
}

/* Lists "floor fmod" rather than "math.floor math.fmod". */
static void display_candidates(char **matches, int count, int max_length)
{
	const char *sep = strpbrk(matches[1], ".:"), *next;
	size_t strip = 0;
	char **names = malloc(((size_t)count + 2) * sizeof *names);
	if (names == NULL)
		return;
	for (; sep; sep = next) {
		next = strpbrk(sep + 1, ".:");
		strip = (size_t)(sep - matches[1]) + 1;
	}
	names[0] = matches[0];
	for (int i = 1; i <= count; i++)
		names[i] = matches[i] + strip;
	names[count + 1] = NULL;
	rl_display_match_list(names, count, max_length - (int)strip);
	rl_forced_update_display();
	free(names);
}

static void readline_start(lua_State *L)
{
	repl_state = L;
	rl_readline_name = "aviary";
	rl_attempted_completion_function = complete_lua;
	rl_completion_display_matches_hook = display_candidates;
	/* '.' and ':' stay inside a word so "math.fl" and "x:su" complete whole */
	rl_completer_word_break_characters = " \t\n\"'`@$><=;|&{}()[],+-*/%^~#";
	rl_completer_quote_characters = "\"'";
	history_start();
}

/* ---- the REPL -------------------------------------------------------------- */

enum { CHUNK_READY, CHUNK_INCOMPLETE, CHUNK_ERROR };

static int is_incomplete(lua_State *L)
{
	size_t len;
	const char *msg = lua_tolstring(L, -1, &len);
	return msg && len >= 5 && strcmp(msg + len - 5, "<eof>") == 0;
}

static int ends_with_semicolon(const char *code)
{
	size_t len = strlen(code);
	while (len > 0 && strchr(" \t\r\n", code[len - 1]))
		len--;
	return len > 0 && code[len - 1] == ';';
}

/* Compiles the chunk text on top of the stack, pushing the function or the
 * error.  "return <text>" goes first, so an expression shows its values as
 * in lua5.4's REPL; either form running out of input asks for more lines, so
 * multi-line table constructors and calls work too. */
static int compile_chunk(lua_State *L, int *show)
{
	size_t len;
	const char *code = lua_tolstring(L, -1, &len);
	const char *with_return = lua_pushfstring(L, "return %s", code);

	*show = !ends_with_semicolon(code);
	if (luaL_loadbuffer(L, with_return, strlen(with_return), "=stdin") == LUA_OK) {
		lua_remove(L, -2);
		return CHUNK_READY;
	}
	lua_remove(L, -2); /* keeps the error: it is the one to show for "{1," */
	*show = 0;
	if (luaL_loadbuffer(L, code, len, "=stdin") == LUA_OK) {
		lua_remove(L, -2);
		return CHUNK_READY;
	}
	if (is_incomplete(L)) {
		lua_remove(L, -2);
		return CHUNK_INCOMPLETE;
	}
	lua_pop(L, 1);
	if (is_incomplete(L))
		return CHUNK_INCOMPLETE;
	/* neither form is unfinished: the statement's error says more */
	lua_pop(L, 1);
	luaL_loadbuffer(L, code, len, "=stdin");
	return CHUNK_ERROR;
}

static void run_entry(lua_State *L, int show)
{
	int base = lua_gettop(L);
	int status = docall(L, 0, LUA_MULTRET);
	int nresults = lua_gettop(L) - base + 1;
	if (status == LUA_OK && show && nresults > 0) {
		push_helper(L, "show", nresults);
		status = docall(L, nresults, 1);
		if (status == LUA_OK) {
			size_t len;
			const char *text = lua_tolstring(L, -1, &len);
			fwrite(text, 1, len, stdout);
			fputc('\n', stdout);
			fflush(stdout);
		}
	}
	report(L, status, 0);
}

static void print_repl_help(void)
{
	fputs("  <expression>   evaluate and print its values (a trailing ';' stays quiet)\n"
	      "  <statement>    run it; unfinished input continues at the '" PROMPT_MORE "' prompt\n"
	      "  ? name         show the doc line of name, e.g. ? av.zeros, ? x:sum\n"
	      "  :help name     the same as ? name\n"
	      "  :help          this text\n"
	      "  :quit          leave (also Ctrl-D or os.exit())\n"
	      "  TAB            complete globals, fields (math.fl) and methods (x:su)\n"
	      "  Ctrl-C         clear the line, or interrupt running code\n"
	      "History is saved in ~/.aviary_history ($AVIARY_HISTORY overrides).\n",
	      stdout);
}

static void show_help_for(lua_State *L, const char *name)
{
	lua_pushstring(L, name);
	push_helper(L, "help", 1);
	if (report(L, docall(L, 1, 1), 0) == LUA_OK) {
		puts(lua_tostring(L, -1));
		fflush(stdout);
		lua_pop(L, 1);
	}
}

/* Handles "? name" and ":command [arg]"; returns 1 on :quit. */
static int run_command(lua_State *L, const char *cmd)
{
	char word[16] = "help";
	const char *arg = cmd + 1;
	if (cmd[0] == ':') {
		size_t n = strcspn(arg, " \t");
		if (n >= sizeof word)
			n = sizeof word - 1;
		memcpy(word, arg, n);
		word[n] = '\0';
		arg += strcspn(arg, " \t");
	}
	arg += strspn(arg, " \t");
	if (strcmp(word, "help") == 0 || strcmp(word, "h") == 0) {
		if (arg[0])
			show_help_for(L, arg);
		else
			print_repl_help();
	} else if (strcmp(word, "quit") == 0 || strcmp(word, "q") == 0 ||
		   strcmp(word, "exit") == 0) {
		return 1;
	} else {
		printf("unknown command :%s (type :help)\n", word);
	}
	fflush(stdout);
	return 0;
}

static void repl(lua_State *L)
{
	int tty = isatty(STDIN_FILENO);
	char *line;
	int result;

	if (tty)
		readline_start(L);
	printf("aviary %s (%s) \xe2\x80\x94 type :help for help\n", AVIARY_VERSION, LUA_VERSION);
	fflush(stdout);
	while ((result = read_line(tty, PROMPT, &line)) != LINE_EOF) {
		const char *start;
		int state, show;
		if (result == LINE_INTERRUPTED)
			continue;
		start = line + strspn(line, " \t");
		if (start[0] == '?' || (start[0] == ':' && start[1] != ':')) {
			int quit = run_command(L, start);
			free(line);
			if (quit)
				break;
			continue;
		}
		lua_settop(L, 0);
		lua_pushstring(L, line);
		free(line);
		/* the compile error stays on top while more lines are read */
		while ((state = compile_chunk(L, &show)) == CHUNK_INCOMPLETE) {
			result = read_line(tty, PROMPT_MORE, &line);
			if (result != LINE_OK)
				break;
			lua_pop(L, 1);
			lua_pushfstring(L, "\n%s", line);
			lua_concat(L, 2);
			free(line);
		}
		if (state == CHUNK_READY)
			run_entry(L, show);
		else if (state == CHUNK_ERROR || result == LINE_EOF)
			report(L, LUA_ERRSYNTAX, 0);
		lua_settop(L, 0);
	}
	if (tty && result == LINE_EOF)
		putchar('\n');
	if (history_file)
		history_truncate_file(history_file, HISTORY_MAX);
}

/* ---- main ------------------------------------------------------------------- */

static int protected_main(lua_State *L)
{
	int argc = (int)lua_tointeger(L, 1);
	char **argv = lua_touserdata(L, 2);
	struct options o;
	int ok;

	lua_settop(L, 0);
	if (!parse_args(argc, argv, &o)) {
		fprintf(stderr, "%s: bad option or missing argument '%s'\n", progname, o.bad);
		print_usage(stderr);
		return 0;
	}
	if (o.help) {
		print_usage(stdout);
		lua_pushboolean(L, 1);
		return 1;
	}
	if (o.no_env) { /* read by the package library as it opens */
		lua_pushboolean(L, 1);
		lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
	}
	luaL_openlibs(L);
	lua_gc(L, LUA_GCGEN, 0, 0); /* as lua5.4 runs, so scripts behave alike */
	if (o.warnings)
		lua_warning(L, "@on", 0);
	set_arg_table(L, argc, argv, o.script);
	add_search_paths(L, argv[0] ? argv[0] : "");
	load_repl_helpers(L);
	if (!preload_aviary(L) || (!o.no_env && !run_lua_init(L))) {
		lua_pushboolean(L, 0);
		return 1;
	}
	if (o.version)
		printf("aviary %s (%s)\n", AVIARY_VERSION, LUA_RELEASE);
	ok = run_options(L, argc, argv, o.script) &&
	     (o.script == 0 || run_script(L, argc, argv, o.script));
	if (o.interactive) {
		/* after an error too: the REPL is where one looks at what went wrong */
		repl(L);
		ok = 1;
	} else if (o.script == 0 && !o.has_e && !o.version) {
		if (isatty(STDIN_FILENO))
			repl(L);
		else
			ok = run_chunk(L, luaL_loadfile(L, NULL));
	}
	lua_pushboolean(L, ok);
	return 1;
}

int main(int argc, char **argv)
{
	lua_State *L = luaL_newstate();
	int status, ok;
	if (argv[0] && argv[0][0])
		progname = argv[0];
	if (L == NULL) {
		print_message("cannot create the Lua state: not enough memory", 1);
		return EXIT_FAILURE;
	}
	main_state = L;
	lua_pushcfunction(L, protected_main);
	lua_pushinteger(L, argc);
	lua_pushlightuserdata(L, argv);
	status = lua_pcall(L, 2, 1, 0);
	ok = status == LUA_OK && lua_toboolean(L, -1);
	report(L, status, 1);
	lua_close(L);
	return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
