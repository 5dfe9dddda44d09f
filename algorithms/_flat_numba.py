"""The flat pre-collapse behind ``decimate.flat_collapse`` as one numba kernel, at module level
so that numba's on-disk cache holds it. Imported on first use only: importing numba costs
~0.5 s."""

from __future__ import annotations

import numba
import numpy as np

MAX_FAN = 64  # a vertex with more faces than this is left to the quadric collapse


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _fan(v, faces, alive, head, link, fan, nbr, nxt, prv):
    """Fill ``fan`` with v's faces in winding order and ``nbr`` with the vertex after v in
    each (the ring, in order); return their count, or 0 when the fan is not one closed,
    consistently oriented disk (an open border, a bow-tie, a non-manifold edge) or too
    large. Dead faces met on v's corner list are unlinked from it."""
    k = 0
    prev = -1
    corner = head[v]
    while corner >= 0:
        f = corner // 3
        after = link[corner]
        if not alive[f]:  # unlink
            if prev < 0:
                head[v] = after
            else:
                link[prev] = after
        else:
            if k == MAX_FAN:
                return 0
            c = corner % 3
            fan[k] = f
            nxt[k] = faces[f, (c + 1) % 3]
            prv[k] = faces[f, (c + 2) % 3]
            k += 1
            prev = corner
        corner = after
    if k < 3:
        return 0
    # walk: the face after (v, a, b) is the one whose corner before v is a; order them
    cur = 0
    for step in range(k):
        want = nxt[cur]
        found = -1
        for j in range(k):
            if prv[j] == want:
                if found >= 0:
                    return 0  # two faces after one edge: non-manifold
                found = j
        if found < 0:
            return 0  # an open border
        if found == 0 and step < k - 1:
            return 0  # the walk closed early: more than one disk (a bow-tie)
        if 0 < found <= step:
            return 0
        # swap the found face into place step + 1
        if step < k - 1 and found != step + 1:
            fan[step + 1], fan[found] = fan[found], fan[step + 1]
            nxt[step + 1], nxt[found] = nxt[found], nxt[step + 1]
            prv[step + 1], prv[found] = prv[found], prv[step + 1]
            found = step + 1
        cur = found
    if cur != 0:
        return 0
    for i in range(k):
        nbr[i] = nxt[i]
    for i in range(k):  # each ring vertex once
        for j in range(i + 1, k):
            if nbr[i] == nbr[j]:
                return 0
    return k


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _link_ok(v, u, k, nbr, faces, alive, head, link, ufan, near_u):
    """The link condition of edge v-u: v and u share exactly two neighbours (the third
    corners of the two faces on the edge). A v of three faces always passes (its ring is
    u and those two): its collapse only goes wrong where the face left, (u, a, b), exists
    already, back to back (a zero-thickness sheet), which leaves a pillow; the collapse passes
    after this one drop pillows (``decimate._collapse_closed``)."""
    if k == 3:
        return True
    ku = 0
    corner = head[u]
    while corner >= 0 and ku < MAX_FAN:
        if alive[corner // 3]:
            ufan[ku] = corner // 3
            ku += 1
        corner = link[corner]
    if corner >= 0:
        return False  # u's fan is too large
    for j in range(ku):
        for c in range(3):
            near_u[faces[ufan[j], c]] = True
    shared = 0
    for i in range(k):
        if nbr[i] != u and near_u[nbr[i]]:
            shared += 1
    for j in range(ku):
        for c in range(3):
            near_u[faces[ufan[j], c]] = False
    return shared == 2


@numba.njit(cache=True, nogil=True, error_model="numpy")
def flat_collapse(pos, faces, flabel, floor, lock, tol, min_quality, max_sweeps):
    """Collapse every vertex whose removal costs no error: v goes to a neighbour u lying on
    the plane of each of v's faces (within ``tol``, measured against the plane of the input
    face each face descends from, so errors never add up), where the re-fanned faces keep
    their orientation and at least ``min_quality`` (twice-area over the sum of squared
    edges; an equilateral triangle has 0.29), and where the edge v-u passes the link
    condition (their only common neighbours are the two faces' third corners: the mesh stays
    manifold). Inside a flat region that is any neighbour; on a straight crease only the two
    along the crease; a corner, a vertex on an open border, a part border, a seam or a
    locked vertex never moves. Of the allowed u, the one whose worst new face is best
    shaped. Sweeps over the vertices until one collapses nothing, or a part would fall under
    ``floor`` (per label of ``flabel``).

    ``faces`` is changed in place (corners re-pointed); returns (alive mask, sweeps). Each
    vertex keeps a linked list of its corners: a collapse moves v's corners onto u's list
    (dead faces are unlinked when next met), so no table is rebuilt."""
    n = pos.shape[0]
    m = faces.shape[0]
    alive = np.ones(m, np.bool_)
    # each face's plane, from the input face: n . x = d (none for a zero-area face: the
    # corners of one never move)
    nrm = np.zeros((m, 3))
    off = np.zeros(m)
    flat_ok = np.ones(m, np.bool_)
    for f in range(m):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        ux, uy, uz = pos[b, 0] - pos[a, 0], pos[b, 1] - pos[a, 1], pos[b, 2] - pos[a, 2]
        wx, wy, wz = pos[c, 0] - pos[a, 0], pos[c, 1] - pos[a, 1], pos[c, 2] - pos[a, 2]
        x, y, z = uy * wz - uz * wy, uz * wx - ux * wz, ux * wy - uy * wx
        ln = np.sqrt(x * x + y * y + z * z)
        if ln > 0.0:
            nrm[f, 0], nrm[f, 1], nrm[f, 2] = x / ln, y / ln, z / ln
            off[f] = nrm[f, 0] * pos[a, 0] + nrm[f, 1] * pos[a, 1] + nrm[f, 2] * pos[a, 2]
        else:
            flat_ok[f] = False
    count = np.zeros(floor.shape[0], np.int64)
    for f in range(m):
        count[flabel[f]] += 1
    open_labels = 0  # labels that may still lose two faces
    for lab in range(floor.shape[0]):
        if count[lab] - 2 >= floor[lab]:
            open_labels += 1
    # corner lists: head[v] -> corner 3 f + c -> link[corner] -> ... -> -1
    head = np.full(n, -1, np.int64)
    link = np.empty(3 * m, np.int64)
    for corner in range(3 * m - 1, -1, -1):
        v = faces[corner // 3, corner % 3]
        link[corner] = head[v]
        head[v] = corner
    fan = np.empty(MAX_FAN, np.int64)
    nbr = np.empty(MAX_FAN, np.int64)
    nxt = np.empty(MAX_FAN, np.int64)
    prv = np.empty(MAX_FAN, np.int64)
    ufan = np.empty(MAX_FAN, np.int64)
    rp = np.empty((MAX_FAN, 3))
    fp = np.empty((MAX_FAN, 4))
    cq = np.empty(MAX_FAN)
    near_u = np.zeros(n, np.bool_)
    gone = np.zeros(n, np.bool_)
    degree = np.zeros(n, np.int64)
    order = np.empty(n, np.int64)
    bucket = np.zeros(MAX_FAN + 2, np.int64)
    sweeps = 0
    for _ in range(max_sweeps):
        if open_labels == 0:
            break
        # this sweep's order: fewest faces first (counting sort). A small fan is cheap to
        # test, and its collapse leaves the better shapes (a vertex of three coplanar faces
        # goes, and their union comes back as one face); the larger fans around it shrink
        # before their turn
        degree[:] = 0
        for f in range(m):
            if alive[f]:
                for c in range(3):
                    degree[faces[f, c]] += 1
        bucket[:] = 0
        for v in range(n):
            bucket[min(degree[v], MAX_FAN + 1)] += 1
        total = 0
        for d in range(MAX_FAN + 2):
            total, bucket[d] = total + bucket[d], total
        for v in range(n):
            d = min(degree[v], MAX_FAN + 1)
            order[bucket[d]] = v
            bucket[d] += 1
        done = 0
        for v in order:
            if gone[v] or lock[v] or degree[v] < 3 or degree[v] > MAX_FAN:
                continue
            k = _fan(v, faces, alive, head, link, fan, nbr, nxt, prv)
            if k == 0:
                continue
            lab = flabel[fan[0]]
            ok = count[lab] - 2 >= floor[lab]
            for i in range(k):
                if flabel[fan[i]] != lab or not flat_ok[fan[i]]:
                    ok = False
            if not ok:
                continue
            # v's ring and its faces' planes, copied close at hand
            for i in range(k):
                a = nbr[i]
                f = fan[i]
                for c in range(3):
                    rp[i, c] = pos[a, c]
                    fp[i, c] = nrm[f, c]
                fp[i, 3] = off[f]
            # each neighbour u: on the plane of each of v's faces, and the faces left after
            # the collapse (v -> u) keep their orientation; the quality of the worst of them
            for iu in range(k):
                cq[iu] = -1.0
                on = True
                for i in range(k):
                    d = fp[i, 0] * rp[iu, 0] + fp[i, 1] * rp[iu, 1] + fp[i, 2] * rp[iu, 2] \
                        - fp[i, 3]
                    if abs(d) > tol:
                        on = False
                        break
                if not on:
                    continue
                worst = 1.0
                for i in range(k):
                    ia = i                     # the face is (v, a, b) in winding order
                    ib = (i + k - 1) % k
                    if ia == iu or ib == iu:
                        continue               # one of the two faces that disappear
                    ux, uy, uz = rp[ia, 0] - rp[iu, 0], rp[ia, 1] - rp[iu, 1], \
                        rp[ia, 2] - rp[iu, 2]
                    wx, wy, wz = rp[ib, 0] - rp[iu, 0], rp[ib, 1] - rp[iu, 1], \
                        rp[ib, 2] - rp[iu, 2]
                    x, y, z = uy * wz - uz * wy, uz * wx - ux * wz, ux * wy - uy * wx
                    ex, ey, ez = wx - ux, wy - uy, wz - uz
                    s = (ux * ux + uy * uy + uz * uz + wx * wx + wy * wy + wz * wz
                         + ex * ex + ey * ey + ez * ez)
                    q = (x * fp[i, 0] + y * fp[i, 1] + z * fp[i, 2]) / s if s > 0 else -1.0
                    worst = min(worst, q)
                    if worst <= min_quality:
                        break
                cq[iu] = worst
            # the best-shaped that keeps the mesh manifold
            best_u = -1
            while True:
                iu = 0
                for i in range(1, k):
                    if cq[i] > cq[iu]:
                        iu = i
                if cq[iu] <= min_quality:
                    break
                if _link_ok(v, nbr[iu], k, nbr, faces, alive, head, link, ufan, near_u):
                    best_u = nbr[iu]
                    break
                cq[iu] = -1.0
            if best_u < 0:
                continue
            u = best_u
            # v's corners: the two faces on v-u die, the others move onto u's list
            corner = head[v]
            while corner >= 0:
                after = link[corner]
                f = corner // 3
                if alive[f]:
                    if faces[f, 0] == u or faces[f, 1] == u or faces[f, 2] == u:
                        alive[f] = False
                        count[lab] -= 1
                    else:
                        faces[f, corner % 3] = u
                        link[corner] = head[u]
                        head[u] = corner
                corner = after
            head[v] = -1
            gone[v] = True
            done += 1
            if count[lab] - 2 < floor[lab]:
                open_labels -= 1
                if open_labels == 0:
                    break
        sweeps += 1
        if done == 0:
            break
    return alive, sweeps
