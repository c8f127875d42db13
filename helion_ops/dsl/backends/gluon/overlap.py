"""``gluon_overlap``: FlashAttention-3's intra-warpgroup overlap of a ring loop with two ``hl.dot`` (D1 with no
accumulator, D2 into the loop-carried ``acc``). Stage A (what does not depend on ``acc``: D1, the softmax) runs one
block ahead of stage B (the rescale of ``acc``, D2): issue D1(j+1), issue D2(j) from stage A's values X(j), wait for
D1 only, softmax(j+1) while D2(j) runs on the tensor cores, wait for D2(j). Other loops keep the plain schedule."""
from __future__ import annotations

from ... import ir as I

def emit(em, s: I.For, rings: list) -> bool:
    """Emit loop ``s`` software-pipelined, or return False when it is not of the shape above."""
    lets = [x.value for x in s.body if isinstance(x, I.Let)]
    dots = [v for v in lets if v.op == "dot"]
    if len(lets) != len(s.body) or len(dots) != 2 or len(dots[0].args) != 2 or len(dots[1].args) != 3:
        return False
    d1, d2 = dots
    acc_i = next((i for i, (_, _, fin) in enumerate(s.carried) if fin is d2), None)
    if acc_i is None:
        return False
    b_ids = {s.carried[acc_i][0].id}   # stage B: what depends on acc
    for v in lets:
        if any(a.id in b_ids for a in v.inputs()):
            b_ids.add(v.id)
    ring_ids = {m.v.id for m in rings}
    used_b = {a.id for v in lets if v.id in b_ids for a in v.inputs()}
    used_a = {a.id for v in lets if v.id not in b_ids for a in v.inputs()}
    brings = [m for m in rings if m.v.id in used_b]
    xs = [v for v in lets if v.id not in b_ids and v.id not in ring_ids and v.id in used_b]
    if d1.id in b_ids or any(m.v.id in used_a for m in brings) \
            or any(fin.id in b_ids for i, (_, _, fin) in enumerate(s.carried) if i != acc_i) \
            or d1.args[0].id not in em.smem or d2.args[1].id not in ring_ids or d2.args[0] not in xs:
        return False
    t, arings = s.tiles[0], [m for m in rings if m not in brings]
    a_lets = [v for v in lets if v.id not in b_ids and all(v is not m.v for m in brings)]
    b_lets = [v for v in lets if v.id in b_ids]
    def b_issue() -> tuple[str, str]:
        """Stage B of the previous block (ring slot ``ring_it - 1``) up to D2's issue."""
        em.ring_slot(brings, "(ring_it - 1)", "p")
        em.scopes.append({x.id: n for x, n in zip(xs, xn)})
        for v in b_lets:
            if v is not d2 and em.lookup(v) is None:
                em.define(v)
        deps = em.mma(em.name_of(d2.args[0]), em.name_of(d2.args[1]), d2, True)
        em.scopes.pop()
        return deps
    def b_wait(deps: str) -> None:
        em.line(f"{names[acc_i]}{deps[deps.index(','):]} = warpgroup_mma_wait(0, deps=({deps}))",
                *[f"mbarrier.arrive({m.name}_empty.index(pslot))" for m in brings])
    def a_stage(start: str | None) -> None:
        """Stage A of a block; in the loop (``start`` None) with the previous block's stage B beside it."""
        em.scopes.append({})
        if start is not None:
            em.line(f"{t.offset} = {start}")
        em.tile_lines(t)
        em.ring_slot(arings)
        pending_b = []
        for v in a_lets:
            if v is d1:   # in the loop the previous block's D2 is issued after D1, in flight past D1's wait
                em.scopes[-1][d1.id] = em.dot(d1, None if start else lambda: pending_b.append(b_issue()))
                em.line(*[f"mbarrier.arrive({m.name}_empty.index(slot))" for m in arings])   # they feed only D1
            elif em.lookup(v) is None:
                em.define(v)
        # what stage B of this block needs, D2's left operand masked and laid out as it will be multiplied
        new_x = [em.dot_operand(x, -1) if x is d2.args[0] else em.name_of(x) for x in xs]
        if pending_b:
            b_wait(pending_b[0])
        em.line(*[f"{n} = {em.name_of(fin)}" for i, ((_, _, fin), n) in enumerate(zip(s.carried, names)) if i != acc_i],
                *[f"{n} = {x}" for n, x in zip(xn, new_x)], "ring_it += 1")
        em.scopes.pop()
    names = em.carry(s)
    begin, end = em.bound(t.begin), em.bound(t.end)
    xn = [em.fresh(f"{x.hint or x.op}_x") for x in xs]
    with em.nest(f"if {begin} < {end}:"):
        a_stage(begin)
        with em.nest(f"for {t.offset} in range({begin} + {t.block}, {end}, {t.block}):"):
            a_stage(None)
        b_wait(b_issue())       # the last block's stage B
    return True
