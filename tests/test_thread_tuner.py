"""The decode thread count follows the machine: fewer threads while another program holds a core, all of them
again once it stops, never a change when the user fixed the count (ThreadTuner, fed the step times a machine
with those speeds would give)."""

from engine.backends.cpu.thread_tuner import LONGEST_PERIOD, ThreadTuner


def run(tuner: ThreadTuner, steps: int, seconds_at: dict, width: int = 1) -> list[int]:
    """Decode ``steps`` steps on a machine where a step on n threads takes seconds_at[n]; the counts used."""
    used = []
    for _ in range(steps):
        n = tuner.threads()
        used.append(n)
        tuner.record(width, seconds_at[n])
    return used


QUIET = {2: 0.050, 1: 0.061}     # 2 threads 1.22x one (this VM, TinyLlama fp16)
BUSY = {2: 0.172, 1: 0.081}      # one core held by another program: 1 thread 2.1x two


def test_a_quiet_machine_keeps_every_thread_and_probes_less_and_less():
    tuner = ThreadTuner(2, fixed=False)
    used = run(tuner, 6000, QUIET)
    assert tuner.chosen == 2 and tuner.switches == 0
    assert used.count(1) / len(used) < 0.01          # the probes' cost
    assert tuner.period == LONGEST_PERIOD


def test_a_busy_core_moves_decode_to_one_thread_soon_and_back_when_it_is_free():
    tuner = ThreadTuner(2, fixed=False)
    run(tuner, 1000, QUIET)
    run(tuner, 20, BUSY)                              # something else starts: steps slow down 3.4x
    assert tuner.chosen == 1
    used = run(tuner, 1000, BUSY)
    assert tuner.chosen == 1 and used.count(2) / len(used) < 0.04   # probes of 2 threads keep losing
    used = run(tuner, 200, QUIET)                     # the other program ends
    assert tuner.chosen == 2 and used[-10:] == [2] * 10


def test_steps_of_other_widths_are_compared_only_with_their_own_width():
    tuner = ThreadTuner(2, fixed=False)
    for _ in range(400):                              # one-token steps and 8-token lookup steps (1.5x as long)
        run(tuner, 1, QUIET)
        run(tuner, 1, {n: 1.5 * s for n, s in QUIET.items()}, width=8)
    assert tuner.chosen == 2 and tuner.switches == 0


def test_a_count_the_user_chose_never_changes():
    tuner = ThreadTuner(2, fixed=True)
    assert set(run(tuner, 300, BUSY)) == {2} and tuner.steady() == 2
    assert set(run(ThreadTuner(1, fixed=False), 300, BUSY)) == {1}
