"""Where a request goes: loaded with a free slot, else a load that evicts nothing busy."""

from __future__ import annotations

from llm_gateway.routing.instances import State
from llm_gateway.routing.placement import choose

from tests.gateway.routing.conftest import GB, busy, instance


def test_a_loaded_model_with_a_free_slot_goes_there_fewest_in_flight_first() -> None:
    a = busy(instance("a", "m"), "m", 1)
    b = instance("b", "m")
    c = instance("c", "other")
    choice = choose([a, b, c], "m")
    assert choice is not None
    assert (choice.instance.name, choice.loads) == ("b", False)


def test_all_slots_taken_waits_rather_than_loading_a_second_copy_that_evicts() -> None:
    """Both instances full (one big model each): the request waits for a slot; loading
    m on b would evict big-b, which has work (today's least_conn thrash)."""
    a = busy(instance("a", "m", vram_gb=24, sizes={"m": 16}), "m", 2)
    b = busy(instance("b", "big-b", vram_gb=24, sizes={"big-b": 16}), "big-b", 1)
    assert choose([a, b], "m", 16 * GB) is None
    # Even when demand is high, a second copy never evicts.
    assert choose([a, b], "m", 16 * GB, replicate=True) is None


def test_a_second_copy_loads_beside_when_demand_warrants_it() -> None:
    a = busy(instance("a", "m", vram_gb=24, sizes={"m": 4}), "m", 2)
    b = busy(instance("b", "small", vram_gb=24, sizes={"small": 2}), "small", 1)
    assert choose([a, b], "m", 4 * GB) is None  # one request waiting: wait for a slot
    choice = choose([a, b], "m", 4 * GB, replicate=True)
    assert choice is not None
    assert (choice.instance.name, choice.loads) == ("b", True)


def test_a_model_loaded_nowhere_loads_beside_before_evicting() -> None:
    full = instance("full", "x", "y", "z", max_loaded=3)
    roomy = instance("roomy", "x", max_loaded=3)
    choice = choose([full, roomy], "new")
    assert choice is not None
    assert (choice.instance.name, choice.loads) == ("roomy", True)


def test_only_idle_models_are_evicted_for_a_load() -> None:
    working = busy(instance("working", "p", vram_gb=24, sizes={"p": 16}), "p")
    idle = instance("idle", "q", vram_gb=24, sizes={"q": 16})
    choice = choose([working, idle], "new", 16 * GB)
    assert choice is not None
    assert choice.instance.name == "idle"
    placement = idle.placement("new", 16 * GB)
    assert placement is not None
    assert [r.model for r in placement[1]] == ["q"]
    busy(idle, "q")
    assert choose([working, idle], "new", 16 * GB) is None


def test_max_loaded_models_counts_without_vram() -> None:
    inst = instance("a", "x", "y", max_loaded=2)
    placement = inst.placement("z", 0)
    assert placement is not None
    beside, evicted = placement
    assert not beside
    assert [r.model for r in evicted] == ["x"]  # the least recently used idle one


def test_down_excluded_and_reserved_instances_take_nothing() -> None:
    down = instance("down", "m")
    down.up = False
    excluded = instance("excluded", "m")
    reserved = instance("reserved", "m")
    reserved.reserved_for = "other"
    assert choose([down, excluded, reserved], "m", exclude={"excluded"}) is None
    reserved.reserved_for = "m"
    choice = choose([down, excluded, reserved], "m", exclude={"excluded"})
    assert choice is not None
    assert choice.instance.name == "reserved"


def test_an_instance_already_loading_comes_last_for_a_new_load() -> None:
    loading = instance("loading")
    loading.dispatched("first", 0, now=1.0)
    assert loading.models["first"].state is State.LOADING
    calm = busy(instance("calm", "other"), "other", 1)
    choice = choose([loading, calm], "second")
    assert choice is not None
    assert choice.instance.name == "calm"


def test_a_dispatch_that_loads_makes_the_likely_victims_uncertain() -> None:
    inst = instance("a", "x", "y", max_loaded=2)
    assert inst.dispatched("z", 0, now=5.0) is True
    assert inst.models["x"].state is State.UNCERTAIN  # Ollama's choice: not offered now
    assert inst.models["y"].state is State.LOADED
    assert inst.loads == {"z": 1}
    assert not inst.free_slot("x")
    assert inst.dispatched("z", 0, now=6.0) is False  # the load is under way already


def test_the_poll_is_the_truth() -> None:
    """Names are normalised (`y` is `y:latest`), as the dispatcher's tickets are."""
    inst = instance("a", "x:latest", "y:latest")
    inst.dispatched("z:latest", 0, now=1.0)  # loading, not listed yet
    inst.models["x:latest"].state = State.UNCERTAIN
    appeared = inst.observe(
        [{"model": "y", "size": 5 * GB, "context_length": 4096, "expires_at": "t"},
         {"name": "w:latest", "size": 1}],
        now=2.0,
    )  # fmt: skip
    assert appeared == ["w:latest"]
    assert set(inst.models) == {"y:latest", "z:latest", "w:latest"}
    assert inst.models["y:latest"].size == 5 * GB
    assert inst.models["y:latest"].context_length == 4096
    assert inst.models["z:latest"].state is State.LOADING  # kept: its request is in flight
    assert inst.up
