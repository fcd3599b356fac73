"""Say "spinning", then spin in a synchronous loop that never gives the event loop a turn."""


def run(context, input):
    print("spinning", flush=True)
    n = 0
    while True:
        n += 1
