"""The long help of ``run`` and ``pack`` (the text after the option list)."""

RUN_EPILOG = """\
input, output and the rest:
  The Sequence's input is this process's stdin (or --input FILE); when stdin is
  closed or /dev/null the input is empty. Its output goes to stdout, byte for
  byte. What the Sequence prints (its stdout/stderr), its log records and the
  events it emits go to stderr, one line each, prefixed:
      [stdout] ...   [stderr] ...   [log INFO] ...   [event NAME] <json message>
  (coloured when stderr is a terminal; --log-format json for one JSON object per
  line instead, each with "type" and "ts", milliseconds since the epoch; an
  event's ts is when it reached this command). The Sequence's sys.stdin is
  empty unless --stdin FILE is given ('--stdin -' hands it this process's stdin;
  the input is then empty unless --input is given). --env FILE adds dotenv-style
  NAME=VALUE lines to its environment.

events while it runs:
  --event NAME=JSON sends one event once the Sequence has started; --events-from
  sends one per NAME=JSON line while it runs, from a file, a FIFO (any number of
  writers: mkfifo ev; echo 'ping="hi"' > ev) or '-' (the terminal, when the
  input comes from --input FILE). The message is the JSON value, or the text
  when it is not JSON. The events the Sequence emits are printed as they come.

numbers:
  At the end, with -v or when stderr is a terminal, one line: how long it took,
  lines and bytes in and out (counted here), and the exit status. --stats
  SECONDS prints the Sequence's RSS, CPU, event-loop lag and items/s while it
  runs; kill -USR1 <pid of this command> prints them once.

stopping:
  Ctrl-C (SIGINT) or SIGTERM stops the Sequence gracefully: its stop handlers run
  (within --stop-timeout) and may keep it alive. The next one kills it (if the
  Sequence kept itself alive, the next one is a final stop without keepalive,
  and the one after it kills).

exit status: the Instance's exit code:
  0 completed, 21 invalid Sequence path, 22 failed on start (syntax/import
  error), 23 failed during execution (the traceback is on stderr), 137 killed,
  138 stopped; 2 for a command-line error (a missing PATH, an unknown option or
  --content-type, bad JSON); 1 when the runner could not be started or did not
  end cleanly (exit 0 without saying so to the host: its output may be cut).

--inline:
  Runs the Sequence in this process (no child, no protocol) so breakpoint(),
  pdb and IDE debuggers work. Same Sequence API, content types, events, stop
  handlers and exit codes. stdout still carries only the output: print() in the
  Sequence goes to stderr as "[stdout] ..." (written through at once, so pdb's
  prompt shows), and fd 1 is pointed at stderr for C code and child processes.
  breakpoint() opens pdb on the terminal (/dev/tty) even when the input is
  piped (unless PYTHONBREAKPOINT says otherwise); give the input with --input
  FILE when you debug, so pdb and the input do not share the terminal.

examples:
  printf 'world\\nrunner\\n' | python -m runner run sample_sequences/hello
  python -m runner run sample_sequences/counter 3 500
  python -m runner run sample_sequences/counter --args '[3, 500]'
  python -m runner run sample_sequences/ndjson-transform --content-type application/x-ndjson --input data.ndjson
  python -m runner run sample_sequences/events --event ping='"hi"' --stop-timeout 1000
  python -m runner run sample_sequences/events --events-from ev   # after: mkfifo ev
  python -m runner run sample_sequences/counter 100 50 --stats 1
  python -m runner run sample_sequences/stop-keepalive --config '{"sendKeepalive": true}'
  python -m runner run sample_sequences/stdinout --stdin lines.txt
  python -m runner run my-sequence --env .env
  python -m runner run --inline sample_sequences/hello --input names.txt
  python -m runner run package.tar.gz --log-format json 2>events.ndjson
"""

PACK_EPILOG = """\
The archive has package.json at its root (as a hub expects), its members in
sorted order with fixed owners, modes and times (the same directory gives the
same bytes), and leaves out __pycache__, .git, .venv, *.pyc and tool caches.
package.json is checked first: valid JSON, an object, and `main` naming a file
in the directory.

--install-deps runs `pip install -t __pypackages__ -r requirements.txt` into a
temporary directory and packs the result as __pypackages__/ (the runner puts it
first on sys.path); the directory itself is not changed.

exit status: 0 packed, 21 not a valid Sequence directory, 1 other errors
(pip failed, cannot write the archive), 2 command-line error.

examples:
  python -m runner pack sample_sequences/hello -o hello.tar.gz
  python -m runner pack my-sequence -o my-sequence.tar.gz --install-deps
  python -m runner run hello.tar.gz
"""
