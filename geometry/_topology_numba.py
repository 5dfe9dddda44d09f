"""The numba kernels behind ``geometry.topology`` (see there), at module level so that numba's
on-disk cache holds them (a kernel that calls another through a closure is compiled again in
every process). Imported on first use only: importing numba costs ~0.5 s."""

from __future__ import annotations

import numba
import numpy as np

SMALL_BUCKET = 32  # insertion sort up to this many edges per vertex, a merge sort beyond

jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@jit
def edge_table(faces, n):
    """Undirected edges ordered by (low, high) vertex: a counting sort on the low vertex,
    then each vertex's few edges sorted by the high one (what np.unique of low * n + high
    gives, in linear time)."""
    m = faces.shape[0]
    h_count = 3 * m
    lo = np.empty(h_count, np.int64)
    hi = np.empty(h_count, np.int64)
    start = np.zeros(n + 1, np.int64)
    for f in range(m):
        for k in range(3):
            a = faces[f, k]
            b = faces[f, (k + 1) % 3]
            j = 3 * f + k
            if a < b:
                lo[j] = a
                hi[j] = b
            else:
                lo[j] = b
                hi[j] = a
            start[lo[j] + 1] += 1
    for v in range(n):
        start[v + 1] += start[v]
    fill = start[:-1].copy()
    order = np.empty(h_count, np.int64)
    for j in range(h_count):  # stable: slots of one low vertex stay in slot order
        order[fill[lo[j]]] = j
        fill[lo[j]] += 1
    for v in range(n):
        s0, s1 = start[v], start[v + 1]
        if s1 - s0 > SMALL_BUCKET:
            seg = order[s0:s1].copy()
            order[s0:s1] = seg[np.argsort(hi[seg], kind="mergesort")]
        else:
            for i in range(s0 + 1, s1):  # insertion sort, stable
                x = order[i]
                key = hi[x]
                p = i - 1
                while p >= s0 and hi[order[p]] > key:
                    order[p + 1] = order[p]
                    p -= 1
                order[p + 1] = x
    edges = np.empty((h_count, 2), np.int64)
    counts = np.zeros(h_count, np.int64)
    inverse = np.empty(h_count, np.int64)
    e = -1
    for v in range(n):
        prev = -1
        for i in range(start[v], start[v + 1]):
            j = order[i]
            if hi[j] != prev:
                e += 1
                edges[e, 0] = v
                edges[e, 1] = hi[j]
                prev = hi[j]
            inverse[j] = e
            counts[e] += 1
    return edges[:e + 1].copy(), inverse.reshape(m, 3), counts[:e + 1].copy()


@jit
def first_use(faces, n):
    """Vertex ids renumbered in order of first use by the faces: (new id per old vertex, -1
    where unused; old id per new vertex). Neighbouring faces then index nearby memory."""
    rank = np.full(n, -1, np.int64)
    order = np.empty(n, np.int64)
    k = 0
    flat = faces.ravel()
    for i in range(flat.shape[0]):
        x = flat[i]
        if rank[x] < 0:
            rank[x] = k
            order[k] = x
            k += 1
    return rank, order[:k].copy()


@jit
def edge_slots(face_edge, n_edges):
    """CSR of each edge's slots (3 * face + corner), in slot order."""
    flat = face_edge.ravel()
    ptr = np.zeros(n_edges + 1, np.int64)
    for s in range(flat.shape[0]):
        ptr[flat[s] + 1] += 1
    for e in range(n_edges):
        ptr[e + 1] += ptr[e]
    fill = ptr[:-1].copy()
    slots = np.empty(flat.shape[0], np.int64)
    for s in range(flat.shape[0]):
        slots[fill[flat[s]]] = s
        fill[flat[s]] += 1
    return ptr, slots


@jit
def patch_volumes(vertices, faces, patch, n_patch):
    """Signed volume of each patch, about the patch's mean face centre (exact for a closed
    patch wherever the centre is; the centre keeps the sum well conditioned)."""
    centre = np.zeros((n_patch, 3), np.float64)
    count = np.zeros(n_patch, np.float64)
    for f in range(faces.shape[0]):
        p = patch[f]
        count[p] += 1.0
        for k in range(3):
            for c in range(3):
                centre[p, c] += vertices[faces[f, k], c] / 3.0
    for p in range(n_patch):
        for c in range(3):
            centre[p, c] /= max(count[p], 1.0)
    vol = np.zeros(n_patch, np.float64)
    for f in range(faces.shape[0]):
        p = patch[f]
        a0 = vertices[faces[f, 0], 0] - centre[p, 0]
        a1 = vertices[faces[f, 0], 1] - centre[p, 1]
        a2 = vertices[faces[f, 0], 2] - centre[p, 2]
        b0 = vertices[faces[f, 1], 0] - centre[p, 0]
        b1 = vertices[faces[f, 1], 1] - centre[p, 1]
        b2 = vertices[faces[f, 1], 2] - centre[p, 2]
        c0 = vertices[faces[f, 2], 0] - centre[p, 0]
        c1 = vertices[faces[f, 2], 1] - centre[p, 1]
        c2 = vertices[faces[f, 2], 2] - centre[p, 2]
        vol[p] += (a0 * (b1 * c2 - b2 * c1) + a1 * (b2 * c0 - b0 * c2)
                   + a2 * (b0 * c1 - b1 * c0)) / 6.0
    return vol


@jit
def manifold_slots(face_edge, counts):
    """(slot pairs, edge) for every edge exactly two faces use, in edge order: slot
    3 * f + k is corner k of face f, where the edge starts."""
    n_edges = counts.shape[0]
    first = np.full(n_edges, -1, np.int64)
    second = np.full(n_edges, -1, np.int64)
    flat = face_edge.ravel()
    for s in range(flat.shape[0]):
        e = flat[s]
        if counts[e] == 2:
            if first[e] < 0:
                first[e] = s
            else:
                second[e] = s
    n_pairs = 0
    for e in range(n_edges):
        if counts[e] == 2:
            n_pairs += 1
    pairs = np.empty((n_pairs, 2), np.int64)
    edge = np.empty(n_pairs, np.int64)
    i = 0
    for e in range(n_edges):
        if counts[e] == 2:
            pairs[i, 0] = first[e]
            pairs[i, 1] = second[e]
            edge[i] = e
            i += 1
    return pairs, edge


@jit
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@jit
def _union(parent, a, b):
    ra = _find(parent, a)
    rb = _find(parent, b)
    if ra != rb:
        if ra < rb:
            parent[rb] = ra
        else:
            parent[ra] = rb


@jit
def components(n, a, b):
    """(count, label per node) of the undirected graph with edges a[i] - b[i], numbered in
    order of each component's lowest node (as scipy's connected_components numbers them):
    a union-find, linear where scipy first builds and sorts a sparse matrix."""
    parent = np.arange(n)
    for i in range(a.shape[0]):
        _union(parent, a[i], b[i])
    label = np.full(n, -1, np.int64)
    out = np.empty(n, np.int64)
    count = 0
    for v in range(n):
        r = _find(parent, v)
        if label[r] < 0:
            label[r] = count
            count += 1
        out[v] = label[r]
    return count, out


@jit
def accumulate_corners(faces, values, n):
    """Per vertex: the sum of ``values[f]`` over the faces using it, added corner 0 of every
    face first, then corner 1, then corner 2 (the order ``np.add.at`` adds in, so the sums
    are the same to the last bit)."""
    out = np.zeros((n, values.shape[1]), np.float64)
    for k in range(3):
        for f in range(faces.shape[0]):
            v = faces[f, k]
            for c in range(values.shape[1]):
                out[v, c] += values[f, c]
    return out


@jit
def vertex_fans(faces, pairs, edges, edge):
    """Fan id per corner: corners of one vertex joined across each manifold edge, numbered
    in order of their first corner (as scipy's connected_components numbers them)."""
    m = faces.shape[0]
    parent = np.arange(3 * m)
    for i in range(pairs.shape[0]):
        f = pairs[i, 0]
        g = pairs[i, 1]
        for end in range(2):
            v = edges[edge[i], end]
            cf = -1
            cg = -1
            for k in range(3):  # the first corner holding v, as np.argmax would pick
                if cf < 0 and faces[f, k] == v:
                    cf = k
                if cg < 0 and faces[g, k] == v:
                    cg = k
            _union(parent, 3 * f + cf, 3 * g + cg)
    label = np.full(3 * m, -1, np.int64)
    fan = np.empty(3 * m, np.int64)
    n_fans = 0
    for c in range(3 * m):
        r = _find(parent, c)
        if label[r] < 0:
            label[r] = n_fans
            n_fans += 1
        fan[c] = label[r]
    fan_vertex = np.empty(n_fans, np.int64)
    for c in range(3 * m):
        fan_vertex[fan[c]] = faces[c // 3, c % 3]
    return fan.reshape(m, 3), fan_vertex


@numba.njit(cache=True, nogil=True, inline="always")
def corner_cross(vertices, a, b, c):
    """(b - a) x (c - a) for vertex indices a, b, c, as three scalars (no array made)."""
    ux = vertices[b, 0] - vertices[a, 0]
    uy = vertices[b, 1] - vertices[a, 1]
    uz = vertices[b, 2] - vertices[a, 2]
    wx = vertices[c, 0] - vertices[a, 0]
    wy = vertices[c, 1] - vertices[a, 1]
    wz = vertices[c, 2] - vertices[a, 2]
    return uy * wz - uz * wy, uz * wx - ux * wz, ux * wy - uy * wx


@jit
def face_cross(vertices, faces):
    """Per face: the cross product (b - a) x (c - a) (twice the area, along the normal)."""
    m = faces.shape[0]
    out = np.empty((m, 3), np.float64)
    for f in range(m):
        out[f, 0], out[f, 1], out[f, 2] = corner_cross(vertices, faces[f, 0], faces[f, 1],
                                                       faces[f, 2])
    return out


@jit
def face_areas(vertices, faces):
    m = faces.shape[0]
    out = np.empty(m, np.float64)
    cross = face_cross(vertices, faces)
    for f in range(m):
        out[f] = 0.5 * np.sqrt(cross[f, 0] ** 2 + cross[f, 1] ** 2 + cross[f, 2] ** 2)
    return out


@jit
def face_normals(vertices, faces):
    cross = face_cross(vertices, faces)
    for f in range(faces.shape[0]):
        length = np.sqrt(cross[f, 0] ** 2 + cross[f, 1] ** 2 + cross[f, 2] ** 2)
        if length > 0:
            cross[f, 0] /= length
            cross[f, 1] /= length
            cross[f, 2] /= length
    return cross


@jit
def sliver_shape(vertices, faces):
    """Per face: edge lengths (edge k runs corner k -> k + 1), the longest and shortest
    edge's index (the first of equals, as argmax / argmin) and the height over the
    longest edge."""
    m = faces.shape[0]
    lengths = np.empty((m, 3), np.float64)
    longest = np.empty(m, np.int64)
    shortest = np.empty(m, np.int64)
    height = np.empty(m, np.float64)
    cross = face_cross(vertices, faces)
    for f in range(m):
        for k in range(3):
            a = faces[f, k]
            b = faces[f, (k + 1) % 3]
            dx = vertices[b, 0] - vertices[a, 0]
            dy = vertices[b, 1] - vertices[a, 1]
            dz = vertices[b, 2] - vertices[a, 2]
            lengths[f, k] = np.sqrt(dx * dx + dy * dy + dz * dz)
        hi = 0
        lo = 0
        for k in range(1, 3):
            if lengths[f, k] > lengths[f, hi]:
                hi = k
            if lengths[f, k] < lengths[f, lo]:
                lo = k
        longest[f] = hi
        shortest[f] = lo
        top = lengths[f, hi]
        area2 = np.sqrt(cross[f, 0] ** 2 + cross[f, 1] ** 2 + cross[f, 2] ** 2)
        height[f] = area2 / top if top > 0 else area2
    return lengths, longest, shortest, height


@jit
def face_adjacency(m, pairs):
    """CSR (ptr, neighbour, pair index) of the face graph given by face pairs."""
    ptr = np.zeros(m + 1, np.int64)
    for i in range(pairs.shape[0]):
        ptr[pairs[i, 0] + 1] += 1
        ptr[pairs[i, 1] + 1] += 1
    for f in range(m):
        ptr[f + 1] += ptr[f]
    fill = ptr[:-1].copy()
    nbr = np.empty(ptr[m], np.int64)
    which = np.empty(ptr[m], np.int64)
    for i in range(pairs.shape[0]):
        f, g = pairs[i, 0], pairs[i, 1]
        nbr[fill[f]] = g
        which[fill[f]] = i
        fill[f] += 1
        nbr[fill[g]] = f
        which[fill[g]] = i
        fill[g] += 1
    return ptr, nbr, which


@jit
def _spread(ptr, nbr, owner, parent, slot, queue, head, tail):
    """Breadth-first search over the face graph from the faces queued in [head, tail): each
    face reached takes its parent's ``owner`` and records that parent and the adjacency slot
    it came through (faces enter ``queue`` after their parent). Returns the new tail."""
    while head < tail:
        f = queue[head]
        head += 1
        for j in range(ptr[f], ptr[f + 1]):
            g = nbr[j]
            if owner[g] < 0:
                owner[g] = owner[f]
                parent[g] = f
                slot[g] = j
                queue[tail] = g
                tail += 1
    return tail


@jit
def nearest_seed(ptr, nbr, seeds):
    """Per face: the index (into ``seeds``) of the seed face fewest face-steps away (the
    first seed to reach it), or -1 where no seed is connected."""
    m = ptr.shape[0] - 1
    owner = np.full(m, -1, np.int64)
    parent = np.full(m, -1, np.int64)
    slot = np.full(m, -1, np.int64)
    queue = np.empty(m, np.int64)
    tail = 0
    for i in range(seeds.shape[0]):
        if owner[seeds[i]] < 0:
            owner[seeds[i]] = i
            queue[tail] = seeds[i]
            tail += 1
    _spread(ptr, nbr, owner, parent, slot, queue, 0, tail)
    return owner


@jit
def smooth(ptr, nbr, x, steps):
    """Jacobi steps of neighbour averaging: x <- (x + sum of neighbours) / (1 + degree)."""
    m = ptr.shape[0] - 1
    cur = x.copy()
    nxt = np.empty_like(cur)
    for _ in range(steps):
        for f in range(m):
            acc = cur[f]
            for j in range(ptr[f], ptr[f + 1]):
                acc += cur[nbr[j]]
            nxt[f] = acc / (1.0 + ptr[f + 1] - ptr[f])
        cur, nxt = nxt, cur
    return cur


@jit
def winding_patches(m, pairs, disagree):
    """BFS over the face graph: patch id per face (numbered by first face, as scipy's
    connected_components) and, per face, whether to flip it to wind like its patch's
    first face (the parities along the BFS tree)."""
    ptr, nbr, which = face_adjacency(m, pairs)
    patch = np.full(m, -1, np.int64)
    parent = np.full(m, -1, np.int64)
    slot = np.full(m, -1, np.int64)
    queue = np.empty(m, np.int64)
    n_patch, tail = 0, 0
    for s in range(m):
        if patch[s] >= 0:
            continue
        patch[s] = n_patch
        queue[tail] = s
        tail = _spread(ptr, nbr, patch, parent, slot, queue, tail, tail + 1)
        n_patch += 1
    # parities along the BFS tree, in queue order (every face after its parent)
    flip = np.zeros(m, np.bool_)
    for k in range(m):
        g = queue[k]
        if parent[g] >= 0:
            flip[g] = flip[parent[g]] ^ disagree[which[slot[g]]]
    return n_patch, patch, flip
