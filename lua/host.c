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
static lua_State *main_state; /* for the Ctrl-C handler to set its hook on */

/* ---- running code ---------------------------------------------------------- */

/* Prints and pops the error on top of the stack when status is an error. */
static int report(lua_State *L, int status, int with_progname) {
	if (status != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		if (with_progname)
			fprintf(stderr, "%s: ", progname);
		fprintf(stderr, "%s\n", msg ? msg : "(error object is not a string)");
		fflush(stderr);
		lua_pop(L, 1);
	}
	return status;
}

static int traceback_handler(lua_State *L) {
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

static volatile sig_atomic_t interrupt_pending;

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
	lua_sethook(L, NULL, 0, 0);
	interrupt_pending = 0;
	luaL_error(L, "interrupted!");
}

/* Lua cannot be entered from a signal handler, but lua_sethook may be called
 * from one, so this arms a hook that raises the error at the next Lua step.
 * SA_RESETHAND lets a second Ctrl-C kill a process stuck in a C kernel. */
static void on_sigint_while_running(int sig) {
	interrupt_pending = 1;
	lua_sethook(main_state, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* Calls the function below the narg arguments, interruptible by Ctrl-C, with
 * a traceback added to any error. */
static int docall(lua_State *L, int narg, int nres) {
	int base = lua_gettop(L) - narg, status;
	struct sigaction sa = {.sa_handler = on_sigint_while_running, .sa_flags = SA_RESETHAND}, old;
	lua_pushcfunction(L, traceback_handler);
	lua_insert(L, base);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, NULL, &old);
	if (old.sa_handler != SIG_IGN) /* ignored, as in a background job: stay so */
		sigaction(SIGINT, &sa, NULL);
	status = lua_pcall(L, narg, nres, base);
	sigaction(SIGINT, &old, NULL);
	if (interrupt_pending) { /* too late to fire: it must not hit the next call */
		lua_sethook(L, NULL, 0, 0);
		interrupt_pending = 0;
	}
	lua_remove(L, base);
	return status;
}

static int run_chunk(lua_State *L, int status) {
	return report(L, status == LUA_OK ? docall(L, 0, 0) : status, 1) == LUA_OK;
}

static int run_string(lua_State *L, const char *code, const char *chunkname) {
	return run_chunk(L, luaL_loadbuffer(L, code, strlen(code), chunkname));
}

/* ---- module search paths --------------------------------------------------- */

static int exists(const char *dir, const char *sub) {
	char path[PATH_MAX + 64];
	struct stat st;
	if (snprintf(path, sizeof path, "%s%s", dir, sub) >= (int)sizeof path) return 0;
	return stat(path, &st) == 0;
}

/* Drops the last component of path in place; 0 when there is none. */
static int strip_component(char *path) {
	char *slash = strrchr(path, '/');
	if (slash == NULL) return 0;
	*slash = '\0';
	return 1;
}

/* package[field] = format(fmt, dir, dir) .. package[field] */
static void prepend_path(lua_State *L, const char *field, const char *fmt, const char *dir) {
	lua_getglobal(L, "package");
	lua_pushfstring(L, fmt, dir, dir);
	lua_getfield(L, -2, field);
	lua_concat(L, 2);
	lua_setfield(L, -2, field);
	lua_pop(L, 1);
}

/* The executable is <dir>/bin/aviary, where <dir> is a source tree (built
 * into <dir>/build), a build directory inside one (build-asan/bin/aviary) or
 * an install prefix.  Anything else, or a missing directory, adds nothing. */
static void add_search_paths(lua_State *L, const char *argv0) {
	char dir[PATH_MAX], root[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
	const char *base;
	if (n > 0)
		dir[n] = '\0';
	else if (strchr(argv0, '/') == NULL || realpath(argv0, dir) == NULL)
		return;
	if (!strip_component(dir) || (base = strrchr(dir, '/')) == NULL || strcmp(base, "/bin") != 0)
		return;
	strip_component(dir);
	/* prepended last to first, so the source tree ends up searched first */
	if (exists(dir, "/share/lua/5.4") || exists(dir, "/lib/lua/5.4")) {
		prepend_path(L, "path", "%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua;", dir);
		prepend_path(L, "cpath", "%s/lib/lua/5.4/?.so;", dir);
	}
	memcpy(root, dir, strlen(dir) + 1);
	/* init.lua, since a build directory has a lua/aviary of its own */
	if (exists(dir, "/lua/aviary/init.lua"))
		prepend_path(L, "cpath", "%s/build/lua/?.so;", dir);
	else if (strip_component(root) && exists(root, "/lua/aviary/init.lua"))
		prepend_path(L, "cpath", "%s/lua/?.so;", dir);
	else
		return;
	prepend_path(L, "path", "%s/lua/?.lua;%s/lua/?/init.lua;", root);
}

/* ---- command line ---------------------------------------------------------- */

struct options {
	int interactive, version, help, no_env, warnings, has_e;
	int script;      /* argv index of the script, 0 when none */
	const char *bad; /* the offending argument when parsing failed */
};

static void print_usage(FILE *out) {
	fprintf(out,
		"usage: %s [options] [script [args]]\n"
		"Lua 5.4 with the aviary module loaded as the global `av`.\n"
		"  -e stat  run the Lua statement stat (may repeat)\n"
		"  -i       open the REPL after running script and -e\n"
		"  -l mod   require mod into a global named after its last part (-l g=mod: into g)\n"
		"  -v       print version information     -h  print this help\n"
		"  -E       ignore LUA_* variables         -W  turn warnings on\n"
		"  --       stop handling options          -   run stdin as the script\n"
		"`%s notebook` runs literate notebooks (notebooks/*.lua) into .ipynb and HTML.\n"
		"No script: a terminal on stdin opens the REPL (:help there); other stdin is run.\n"
		"Environment:\n"
		"  AVIARY_NO_PRELOAD=1  start without loading aviary (no global av)\n"
		"  AVIARY_HISTORY       the REPL history file (default ~/.aviary_history)\n"
		"  LUA_PATH, LUA_CPATH, LUA_INIT as for lua5.4; the project's modules come first\n",
		progname, progname);
}

static int parse_args(int argc, char **argv, struct options *o) {
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
		o->bad = a;
		if (strchr("ivEWh", a[1]) && a[2] != '\0') return 0;
		switch (a[1]) {
		case 'i': o->interactive = 1; break;
		case 'v': o->version = 1; break;
		case 'E': o->no_env = 1; break;
		case 'W': o->warnings = 1; break;
		case 'h': o->help = 1; break;
		case 'e':
		case 'l':
			o->has_e |= a[1] == 'e';
			if (a[2] == '\0' && ++i >= argc) return 0;
			break;
		default:
			return 0;
		}
	}
	o->script = i < argc ? i : 0;
	return 1;
}

/* arg[0] is the script, arguments after it count up from 1 and the
 * interpreter and its options count down, exactly as lua5.4 sets them. */
static void set_arg_table(lua_State *L, int argc, char **argv, int script) {
	lua_createtable(L, argc, script + 1);
	for (int i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i - script);
	}
	lua_setglobal(L, "arg");
}

static int run_library(lua_State *L, const char *spec) {
	const char *eq = strchr(spec, '=');
	const char *module = eq ? eq + 1 : spec, *dot = strrchr(module, '.');
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
	lua_remove(L, status == LUA_OK ? -1 : -2); /* the global's name */
	return report(L, status, 1) == LUA_OK;
}

/* Runs the -e and -l options in the order given; stops at the first error. */
static int run_options(lua_State *L, int argc, char **argv, int script) {
	for (int i = 1; i < (script ? script : argc); i++) {
		char opt = argv[i][0] == '-' ? argv[i][1] : '\0';
		const char *value;
		if (opt != 'e' && opt != 'l') continue;
		value = argv[i][2] ? argv[i] + 2 : argv[++i];
		if (!(opt == 'e' ? run_string(L, value, "=(command line)") : run_library(L, value)))
			return 0;
	}
	return 1;
}

/* "aviary notebook ..." runs the notebook tool, unless a file of that name is
 * in the way: a script always wins, as it would for lua5.4. */
static const char notebook_command[] =
	"if not require('aviary.notebook').main({...}) then os.exit(1) end";

static int run_script(lua_State *L, int argc, char **argv, int script) {
	const char *name = argv[script];
	struct stat st;
	int status;
	if (strcmp(name, "-") == 0 && strcmp(argv[script - 1], "--") != 0)
		name = NULL; /* stdin */
	if (name && strcmp(name, "notebook") == 0 && stat(name, &st) != 0)
		status = luaL_loadbuffer(L, notebook_command, sizeof notebook_command - 1, "=notebook");
	else
		status = luaL_loadfile(L, name);
	if (status == LUA_OK) {
		luaL_checkstack(L, argc, "too many arguments to script");
		for (int i = script + 1; i < argc; i++)
			lua_pushstring(L, argv[i]);
		status = docall(L, argc - script - 1, 0);
	}
	return report(L, status, 1) == LUA_OK;
}

static int run_lua_init(lua_State *L) {
	const char *name = getenv("LUA_INIT_5_4") ? "=LUA_INIT_5_4" : "=LUA_INIT";
	const char *init = getenv(name + 1);
	if (init == NULL) return 1;
	if (init[0] == '@') return run_chunk(L, luaL_loadfile(L, init + 1));
	return run_string(L, init, name);
}

static int preload_aviary(lua_State *L) {
	const char *skip = getenv("AVIARY_NO_PRELOAD");
	if (skip && skip[0] && strcmp(skip, "0") != 0) return 1;
	lua_getglobal(L, "require");
	lua_pushliteral(L, "aviary");
	if (docall(L, 1, 1) != LUA_OK) {
		fprintf(stderr, "%s: cannot load the aviary module: %s\n"
			"(set AVIARY_NO_PRELOAD=1 to start without it)\n", progname, lua_tostring(L, -1));
		lua_pop(L, 1);
		return 0;
	}
	lua_setglobal(L, "av");
	return 1;
}

/* ---- REPL helpers -----------------------------------------------------------
 * Formatting values, listing completions and looking up docs are table walks,
 * much shorter and safer in Lua.  They live in the registry, not in _G, and
 * capture the library functions they use, so user code cannot break them. */

static const char repl_helpers[] =
	"local G = ...\n"
	"local getmetatable, getinfo, getupvalue = debug.getmetatable, debug.getinfo, debug.getupvalue\n"
	"local next, pcall, rawget, select, tostring, type = next, pcall, rawget, select, tostring, type\n"
	"local concat, sort, format, mathtype = table.concat, table.sort, string.format, math.type\n"
	"local keywords = {}\n"
	"for w in ('and break do else elseif end false for function goto if in local nil not or '\n"
	"  .. 'repeat return then true until while'):gmatch('%a+') do keywords[w] = true end\n"
	"local function ident(s)\n"
	"  return type(s) == 'string' and s:match('^[%a_][%w_]*$') ~= nil and not keywords[s]\n"
	"end\n"
	"local function index(v, k) return v[k] end\n"
	"local function metafield(v, k)\n"
	"  local mt = getmetatable(v)\n"
	"  return type(mt) == 'table' and rawget(mt, k) or nil\n"
	"end\n"
	/* "a.b:c" to its value; nil when a step fails */
	"local function resolve(path)\n"
	"  local v = G\n"
	"  for name in path:gmatch('[^.:]+') do\n"
	"    local ok = ident(name)\n"
	"    if ok then ok, v = pcall(index, v, name) end\n"
	"    if not ok or v == nil then return nil end\n"
	"  end\n"
	"  return v\n"
	"end\n"
	/* names for v: its fields, then those of its metatable's `methods` and its
	 * __index: a table (followed on) or a C function's table upvalues (as a
	 * binding's closure over its methods); each table is visited once */
	"local function gather(v, methods, out, seen)\n"
	"  if seen[v] then return end\n"
	"  seen[v] = true\n"
	"  for k, x in next, type(v) == 'table' and v or {} do\n"
	"    local wanted = not methods or type(x) == 'function' or metafield(x, '__call')\n"
	"    if wanted and ident(k) then out[k] = true end\n"
	"  end\n"
	"  local idx = metafield(v, '__index')\n"
	"  local more = {metafield(v, 'methods') or false, idx or false,\n"
	"    type(idx) == 'table' and rawget(idx, 'methods')}\n"
	"  if type(idx) == 'function' and getinfo(idx, 'S').what == 'C' then\n"
	"    for i = 1, getinfo(idx, 'u').nups do more[#more + 1] = select(2, getupvalue(idx, i)) end\n"
	"  end\n"
	"  for _, m in next, more do\n"
	"    if type(m) == 'table' then gather(m, methods, out, seen) end\n"
	"  end\n"
	"end\n"
	/* text may start with operators readline kept in the word, as in "2/mat" */
	"local function complete(text)\n"
	"  local head, expr = text:match('^(.-)([%w_.:]*)$')\n"
	"  local path, sep, part = expr:match('^(.-)([.:])([%w_]*)$')\n"
	"  local out, list, v = {}, {}, G\n"
	"  if path == nil then\n"
	"    part, path, sep = expr, '', ''\n"
	"    for k in next, keywords do out[k] = true end\n"
	"  else\n"
	"    v = path ~= '' and resolve(path)\n"
	"    if not v then return list end\n"
	"  end\n"
	"  gather(v, sep == ':', out, {})\n"
	"  for k in next, out do\n"
	"    if k:sub(1, #part) == part then list[#list + 1] = head .. path .. sep .. k end\n"
	"  end\n"
	"  sort(list)\n"
	"  return list\n"
	"end\n"
	/* Torch-style tostrings end in a line like "[FloatTensor of size 2x3]" */
	"local function one_line(s)\n"
	"  local footer = s:match('\\n%s*(%[[^\\n]*%])%s*$')\n"
	"  return footer or s:match('^[^\\n]*') .. (s:find('\\n') and ' ...' or '')\n"
	"end\n"
	"local function plain_table(v) return type(v) == 'table' and not metafield(v, '__tostring') end\n"
	"local function brief(v)\n"
	"  if type(v) ~= 'string' then return plain_table(v) and '{...}' or one_line(G.tostring(v)) end\n"
	"  if #v > 40 then v = v:sub(1, 37) .. '...' end\n"
	"  return (format('%q', v):gsub('\\n', 'n'))\n"
	"end\n"
	/* by type, then by value; no type name is a prefix of another */
	"local function key_order(a, b)\n"
	"  local ta, tb = type(a), type(b)\n"
	"  if ta == tb and (ta == 'number' or ta == 'string') then return a < b end\n"
	"  return ta .. tostring(a) < tb .. tostring(b)\n"
	"end\n"
	/* one level deep: the array part, then the other keys sorted so the
	 * output is stable, cut short at 20 items or 120 characters */
	"local function summary(t)\n"
	"  local items, width, full, n, keys = {}, 0, false, 0, {}\n"
	"  local function add(s)\n"
	"    full = full or #items > 0 and (#items >= 20 or width + #s > 120)\n"
	"    if not full then items[#items + 1], width = s, width + #s + 2 end\n"
	"  end\n"
	"  while not full and rawget(t, n + 1) ~= nil do n = n + 1; add(brief(rawget(t, n))) end\n"
	"  for k in next, t do\n"
	"    if full or #keys >= 200 then break end\n"
	"    if not (mathtype(k) == 'integer' and k >= 1 and k <= n) then keys[#keys + 1] = k end\n"
	"  end\n"
	"  sort(keys, key_order)\n"
	"  for _, k in next, keys do\n"
	"    add((ident(k) and k or '[' .. brief(k) .. ']') .. '=' .. brief(rawget(t, k)))\n"
	"  end\n"
	"  return '{' .. concat(items, ', ') .. (full and ', ...}' or '}')\n"
	"end\n"
	"local function show(...)\n"
	"  local parts = {...}\n"
	"  for i = 1, select('#', ...) do\n"
	"    parts[i] = plain_table(parts[i]) and summary(parts[i]) or G.tostring(parts[i])\n"
	"  end\n"
	"  return concat(parts, '\\t')\n"
	"end\n"
	"local function help(name)\n"
	"  local ok, doc = pcall(G.require, 'aviary.doc')\n"
	"  local tail = name:match('[.:]([%a_][%w_]*)$') or name\n"
	"  local keys = ok and type(doc) == 'table' and {name, 'av.' .. name, 'Tensor:' .. tail} or {}\n"
	"  for _, key in next, keys do\n"
	"    local found, text = pcall(index, doc, key)\n"
	"    text = found and text ~= nil and tostring(text)\n"
	"    if text then return text:find(tail, 1, true) and text or key .. ': ' .. text end\n"
	"  end\n"
	"  if not ok and not tostring(doc):find(\"module 'aviary.doc' not found\", 1, true) then\n"
	"    return 'aviary.doc failed to load: ' .. one_line(tostring(doc))\n"
	"  end\n"
	"  local v = resolve(name)\n"
	"  local kind = v ~= nil and (metafield(v, '__name') or type(v))\n"
	"  return 'no help for ' .. name .. (kind and ' (' .. tostring(kind) .. ')' or '')\n"
	"end\n"
	"return {complete = complete, show = show, help = help}\n";

static void load_repl_helpers(lua_State *L) {
	if (luaL_loadbuffer(L, repl_helpers, sizeof repl_helpers - 1, "=repl") != LUA_OK)
		lua_error(L); /* a bug in the text above */
	lua_pushglobaltable(L);
	lua_call(L, 1, 1);
	lua_setfield(L, LUA_REGISTRYINDEX, HELPERS_KEY);
}

/* Pushes helper `name` below the nargs values on top of the stack. */
static void push_helper(lua_State *L, const char *name, int nargs) {
	lua_getfield(L, LUA_REGISTRYINDEX, HELPERS_KEY);
	lua_getfield(L, -1, name);
	lua_remove(L, -2);
	lua_insert(L, -1 - nargs);
}

/* ---- reading lines --------------------------------------------------------- */

enum { LINE_OK, LINE_EOF, LINE_INTERRUPTED };

static volatile sig_atomic_t prompt_sigint, prompt_sigwinch;
static char *accepted_line;
static int line_accepted;
static char *history_file; /* NULL when history is not saved */

static void on_prompt_signal(int sig) {
	if (sig == SIGINT) prompt_sigint = 1;
	if (sig == SIGWINCH) prompt_sigwinch = 1;
}

static void on_line_accepted(char *line) {
	accepted_line = line;
	line_accepted = 1;
	rl_callback_handler_remove(); /* or readline prompts again at once */
}

/* Uses readline's callback interface, so that a Ctrl-C at the prompt
 * abandons the line from this loop instead of jumping out of a handler. */
static int read_tty_line(const char *prompt, char **line) {
	struct sigaction sa = {.sa_handler = on_prompt_signal}, old_int, old_winch;
	sigset_t blocked, unblocked;
	int result = LINE_OK, fd = fileno(rl_instream);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGWINCH, &sa, &old_winch);
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGINT);
	sigaddset(&blocked, SIGWINCH);
	/* blocked except inside pselect and readline, so no signal slips in
	 * between a flag check and the wait */
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

static int read_plain_line(const char *prompt, char **line) {
	size_t cap = 0;
	fputs(prompt, stdout);
	fflush(stdout);
	*line = NULL;
	if (getline(line, &cap, stdin) < 0) {
		free(*line);
		return LINE_EOF;
	}
	(*line)[strcspn(*line, "\n")] = '\0';
	return LINE_OK;
}

static void history_start(void) {
	const char *env = getenv("AVIARY_HISTORY"), *home = getenv("HOME");
	int fd;
	if (env && env[0])
		history_file = strdup(env);
	else if (home && home[0] && (history_file = malloc(strlen(home) + 18)))
		sprintf(history_file, "%s/.aviary_history", home);
	if (history_file == NULL) return;
	stifle_history(HISTORY_MAX);
	read_history(history_file);
	/* append_history needs an existing file; when it cannot be made the
	 * history lasts for this session only */
	if ((fd = open(history_file, O_WRONLY | O_CREAT | O_APPEND, 0600)) < 0) {
		free(history_file);
		history_file = NULL;
		return;
	}
	close(fd);
	history_truncate_file(history_file, HISTORY_MAX);
}

static int read_line(int tty, const char *prompt, char **line) {
	int result = tty ? read_tty_line(prompt, line) : read_plain_line(prompt, line);
	HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
	if (result != LINE_OK || !tty || (*line)[strspn(*line, " \t")] == '\0') return result;
	if (last && strcmp(last->line, *line) == 0) return result;
	add_history(*line);
	if (history_file)
		append_history(1, history_file);
	return result;
}

/* ---- completion ------------------------------------------------------------ */

static lua_State *repl_state;
static int candidates_index; /* stack slot of the candidate list */
static int candidates_next;

static char *next_candidate(const char *text, int state) {
	const char *s;
	char *copy;
	candidates_next = state == 0 ? 1 : candidates_next + 1;
	lua_rawgeti(repl_state, candidates_index, candidates_next);
	copy = (s = lua_tostring(repl_state, -1)) ? strdup(s) : NULL;
	lua_pop(repl_state, 1);
	return copy;
}

static char **complete_lua(const char *text, int start, int end) {
	lua_State *L = repl_state;
	int top = lua_gettop(L);
	char **matches = NULL;
	if (rl_completion_quote_character) return NULL; /* in a string: readline does file names */
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

static void readline_start(lua_State *L) {
	repl_state = L;
	rl_readline_name = "aviary";
	rl_instream = stdin;
	rl_outstream = stdout;
	rl_attempted_completion_function = complete_lua;
	/* '.' and ':' stay inside a word so "math.fl" and "x:su" complete
	 * whole; '/' and '~' do too, for file names inside strings */
	rl_completer_word_break_characters = " \t\n\"'`@$><=;|&{}()[],+-*%^#";
	rl_completer_quote_characters = "\"'";
	history_start();
}

/* ---- the REPL -------------------------------------------------------------- */

enum { CHUNK_READY, CHUNK_INCOMPLETE, CHUNK_ERROR };

static int is_incomplete(lua_State *L, int idx) {
	size_t len;
	const char *msg = lua_tolstring(L, idx, &len);
	return msg && len >= 5 && strcmp(msg + len - 5, "<eof>") == 0;
}

static int ends_with_semicolon(const char *code) {
	size_t len = strlen(code);
	while (len > 0 && strchr(" \t\r\n", code[len - 1]))
		len--;
	return len > 0 && code[len - 1] == ';';
}

/* Compiles the chunk text on top of the stack and pushes the function or the
 * error.  "return <text>" goes first, so an expression shows its values as
 * in lua5.4's REPL; either form running out of input asks for more lines, so
 * multi-line table constructors and calls work too. */
static int compile_chunk(lua_State *L, int *show) {
	size_t len;
	const char *code = lua_tolstring(L, -1, &len);
	const char *with_return = lua_pushfstring(L, "return %s", code);
	*show = !ends_with_semicolon(code);
	if (luaL_loadbuffer(L, with_return, strlen(with_return), "=stdin") == LUA_OK) {
		lua_remove(L, -2);
		return CHUNK_READY;
	}
	lua_remove(L, -2); /* keeps the error: it is the one to show for "{1," */
	if (luaL_loadbuffer(L, code, len, "=stdin") == LUA_OK || is_incomplete(L, -1)) {
		lua_remove(L, -2);
		return lua_isfunction(L, -1) ? CHUNK_READY : CHUNK_INCOMPLETE;
	}
	/* when neither form is unfinished, the statement's error says more */
	lua_remove(L, is_incomplete(L, -2) ? -1 : -2);
	return is_incomplete(L, -1) ? CHUNK_INCOMPLETE : CHUNK_ERROR;
}

static void run_entry(lua_State *L, int show) {
	int base = lua_gettop(L), status = docall(L, 0, LUA_MULTRET);
	int nresults = lua_gettop(L) - base + 1;
	if (status == LUA_OK && show && nresults > 0) {
		push_helper(L, "show", nresults);
		if ((status = docall(L, nresults, 1)) == LUA_OK) {
			lua_writestring(lua_tostring(L, -1), lua_rawlen(L, -1));
			lua_writeline();
		}
	}
	report(L, status, 0);
}

static void print_repl_help(void) {
	fputs("  <expression>   evaluate and print its values (a trailing ';' keeps quiet)\n"
	      "  <statement>    run it; unfinished input continues at the '" PROMPT_MORE "' prompt\n"
	      "  ? name         show the doc line of name (? av.zeros, ? x:sum; or :help name)\n"
	      "  display(x)     show a plot or an image (inline in kitty or iTerm2, else as a PNG file)\n"
	      "  :quit          leave (also Ctrl-D or os.exit())\n"
	      "  TAB            complete globals, fields (math.fl) and methods (x:su)\n"
	      "  Ctrl-C         clear the line, or interrupt running code\n"
	      "History is saved in ~/.aviary_history ($AVIARY_HISTORY overrides).\n", stdout);
}

/* Handles "? name" and ":command [arg]", where any start of a command's name
 * will do (:h, :q); returns 1 on :quit. */
static int run_command(lua_State *L, const char *cmd) {
	int question = cmd[0] == '?';
	const char *word = question ? "help" : cmd + 1;
	size_t n = question ? 4 : strcspn(word, " \t");
	const char *arg = cmd + 1 + (question ? 0 : n);
	arg += strspn(arg, " \t");
	if (n > 0 && strncmp(word, "quit", n) == 0) return 1;
	if (n == 0 || strncmp(word, "help", n) != 0) {
		printf("unknown command :%.*s (type :help)\n", (int)n, word);
	} else if (arg[0] == '\0') {
		print_repl_help();
	} else {
		lua_pushlstring(L, arg, strcspn(arg, " \t"));
		push_helper(L, "help", 1);
		if (report(L, docall(L, 1, 1), 0) == LUA_OK) {
			puts(lua_tostring(L, -1));
			lua_pop(L, 1);
		}
	}
	fflush(stdout);
	return 0;
}

/* display(x) shows a plot or an image in the terminal, or saves it to a file;
 * a REPL without it still works, so a failure to load it is ignored. */
static const char repl_display[] =
	"if display == nil then\n"
	"  local ok, d = pcall(require, 'aviary.notebook.display')\n"
	"  if ok then display = d.terminal() end\n"
	"end\n";

static void repl(lua_State *L) {
	int tty = isatty(STDIN_FILENO), result, state, show;
	char *line;
	if (luaL_loadbuffer(L, repl_display, sizeof repl_display - 1, "=repl") != LUA_OK ||
	    lua_pcall(L, 0, 0, 0) != LUA_OK)
		lua_pop(L, 1);
	if (tty)
		readline_start(L);
	printf("aviary %s (%s) \xe2\x80\x94 type :help for help\n", AVIARY_VERSION, LUA_VERSION);
	fflush(stdout);
	while ((result = read_line(tty, PROMPT, &line)) != LINE_EOF) {
		const char *start;
		if (result == LINE_INTERRUPTED) continue;
		start = line + strspn(line, " \t");
		if (start[0] == '?' || (start[0] == ':' && start[1] != ':')) { /* "::label::" is Lua */
			int quit = run_command(L, start);
			free(line);
			if (quit) break;
			continue;
		}
		lua_pushstring(L, line);
		free(line);
		/* the compile error stays on top while more lines are read */
		while ((state = compile_chunk(L, &show)) == CHUNK_INCOMPLETE) {
			if ((result = read_line(tty, PROMPT_MORE, &line)) != LINE_OK) break;
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
	if (history_file)
		history_truncate_file(history_file, HISTORY_MAX);
}

/* ---- main ------------------------------------------------------------------ */

static int protected_main(lua_State *L) {
	int argc = (int)lua_tointeger(L, 1), ok;
	char **argv = lua_touserdata(L, 2);
	struct options o;
	if (!(ok = parse_args(argc, argv, &o)) || o.help) {
		if (!ok) fprintf(stderr, "%s: bad option or missing argument '%s'\n", progname, o.bad);
		print_usage(ok ? stdout : stderr);
		lua_pushboolean(L, ok);
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
	if (!preload_aviary(L) || (!o.no_env && !run_lua_init(L))) return 0;
	if (o.version)
		printf("aviary %s (%s)\n", AVIARY_VERSION, LUA_RELEASE);
	ok = run_options(L, argc, argv, o.script) &&
	     (o.script == 0 || run_script(L, argc, argv, o.script));
	if (o.interactive) {
		repl(L); /* after an error too: the REPL is where one looks into it */
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

int main(int argc, char **argv) {
	lua_State *L = luaL_newstate();
	int status;
	if (argv[0] && argv[0][0])
		progname = argv[0];
	if (L == NULL) {
		fprintf(stderr, "%s: cannot create the Lua state: not enough memory\n", progname);
		return EXIT_FAILURE;
	}
	main_state = L;
	lua_pushcfunction(L, protected_main);
	lua_pushinteger(L, argc);
	lua_pushlightuserdata(L, argv);
	status = lua_pcall(L, 2, 1, 0);
	if (report(L, status, 1) == LUA_OK && !lua_toboolean(L, -1))
		status = LUA_ERRRUN;
	lua_close(L);
	return status == LUA_OK ? EXIT_SUCCESS : EXIT_FAILURE;
}
