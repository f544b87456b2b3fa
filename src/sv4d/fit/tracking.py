"""One mesh through time: a template from a reference frame, carried through every fitted frame with
the same vertices and faces.

* :func:`clean_mesh` drops floaters (components much smaller than the largest) and unused vertices;
  :func:`decimate_mesh` reduces a mesh to a face budget (quadric decimation, ``fast-simplification``).
* :func:`track_surfaces` follows a sequence of target surfaces (the field's iso-surface at each
  frame, for a NeRF fit, which has no canonical space) by non-rigid registration: starting from the
  previous frame's positions it alternates closest-point correspondences (both ways, normals
  compatible, to the target's tangent plane) with an as-rigid-as-possible solve that keeps every
  vertex's neighbourhood a rotated copy of the template's, plus a term that keeps motion smooth in
  time (a damped constant-velocity prediction).
* :func:`surface_report` measures how well a tracked frame matches its target: the distance from the
  tracked vertices to the target, and the share of the target that no tracked vertex comes near —
  surface tracking cannot follow (a part splitting off, a mouth opening), reported rather than hidden.

Lengths are in world units; tolerances are fractions of the template's bounding-box diagonal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..errors import Sv4dError
from ..io.mesh import Mesh

__all__ = [
    "clean_mesh",
    "decimate_mesh",
    "relax_mesh",
    "mesh_edges",
    "TrackingOptions",
    "FrameReport",
    "track_surfaces",
    "surface_report",
    "mesh_quality",
]


def _face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    t = vertices[faces].astype(np.float64)
    return 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)


def _compact(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None) -> Mesh:
    """The mesh of ``faces`` with the vertices they use, renumbered in their original order."""
    used = np.zeros(len(vertices), bool)
    used[faces.reshape(-1)] = True
    new_index = np.cumsum(used) - 1
    return Mesh(vertices[used], new_index[faces], None if colors is None else colors[used])


def clean_mesh(mesh: Mesh, keep_fraction: float = 0.1) -> Mesh:
    """``mesh`` without zero-area triangles, without the connected components whose area is under
    ``keep_fraction`` of the largest one's (floaters, specks), and without unused vertices."""
    if len(mesh.faces) == 0:
        raise Sv4dError("the mesh is empty")
    faces = mesh.faces[_face_areas(mesh.vertices, mesh.faces) > 0]
    if len(faces) == 0:
        raise Sv4dError("the mesh has no triangle of non-zero area")
    n = len(mesh.vertices)
    rows = np.repeat(np.arange(len(faces)), 3)
    incidence = sparse.csr_matrix((np.ones(len(rows)), (rows, faces.reshape(-1))), shape=(len(faces), n))
    _, label = connected_components(incidence.T @ incidence, directed=False)
    face_label = label[faces[:, 0]]
    area = np.bincount(face_label, weights=_face_areas(mesh.vertices, faces))
    keep = area >= keep_fraction * area.max()
    return _compact(mesh.vertices, faces[keep[face_label]], mesh.colors)


def decimate_mesh(mesh: Mesh, target_faces: int) -> Mesh:
    """``mesh`` reduced to about ``target_faces`` triangles by quadric edge collapse (unchanged when
    it has no more than that); colours are dropped (bake them afterwards)."""
    target_faces = int(target_faces)
    if target_faces < 4:
        raise Sv4dError(f"the face budget must be at least 4, got {target_faces}")
    if len(mesh.faces) <= target_faces:
        return Mesh(mesh.vertices, mesh.faces, None)
    import fast_simplification

    v, f = fast_simplification.simplify(
        mesh.vertices.astype(np.float32),
        mesh.faces.astype(np.int32),
        target_reduction=1 - target_faces / len(mesh.faces),
    )
    f = np.asarray(f, np.int64)
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    v = np.asarray(v, np.float32)
    f = f[_face_areas(v, f) > 0]
    if len(f) == 0:
        raise Sv4dError("decimation left no triangles; raise the face budget")
    out = _compact(v, f, None)
    if np.sign(out.volume) != np.sign(mesh.volume):  # keep the input's winding
        out = Mesh(out.vertices, out.faces[:, ::-1], None)
    return out


def relax_mesh(mesh: Mesh, surface: Mesh, iterations: int = 5, step: float = 0.5) -> Mesh:
    """``mesh`` with better-shaped triangles on the same surface: each round moves every vertex part
    of the way to its neighbours' centroid within its tangent plane, then back onto ``surface``
    (the tangent plane of its closest point there). Decimation leaves slivers, which fold first
    when the mesh moves."""
    faces = mesh.faces
    e = mesh_edges(faces)
    n = len(mesh.vertices)
    adj = sparse.csr_matrix((np.ones(2 * len(e)), (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(n, n))
    deg = np.asarray(adj.sum(1)).ravel()
    target = _Target(surface)
    x = mesh.vertices.astype(np.float64)
    for _ in range(iterations):
        vn = _normals(x, faces)
        d = adj @ x / np.maximum(deg, 1)[:, None] - x
        d -= np.einsum("ij,ij->i", d, vn)[:, None] * vn
        x = x + step * d
        _, q = target.tree.query(x)
        qn = target.normals[q]
        x = x - np.einsum("ij,ij->i", x - target.points[q], qn)[:, None] * qn
    return Mesh(x, faces, mesh.colors)


def mesh_edges(faces: np.ndarray) -> np.ndarray:
    """(E, 2) int64 undirected edges of a triangle mesh, each once (i < j), sorted."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).astype(np.int64)
    return np.unique(np.sort(e, axis=1), axis=0)


@dataclass
class TrackingOptions:
    """Settings of the non-rigid registration (the defaults suit marching-cubes targets).

    rigid_iterations: rigid point-to-plane rounds first (the bulk motion), per tracked time.
    iterations: non-rigid correspondence / solve rounds per tracked time.
    stiffness: as-rigid-as-possible weight at the first and the last round (it relaxes
        geometrically between them, coarse to fine), relative to the data weight 1 per vertex.
    smoothness: weight per vertex of the damped constant-velocity prediction (motion in time).
    velocity: share of the previous step's motion carried into the prediction.
    max_distance: correspondences farther than this (fraction of the diagonal) are ignored, at
        the first and at the last non-rigid round.
    rigid_distance: the same for the rigid rounds (wide: the whole mesh moves together).
    normal_pull: target-to-vertex pulls act along the vertex normal only (no sliding of vertices
        towards denser parts of the target).
    reverse_weight: weight of those pulls against the vertex-to-target ones (1 each).
    coverage_weight: weight of the pull of target points farther than ``coverage_distance`` (and
        than the template's median edge) from every vertex (within ``reach``) on their nearest
        vertex, whatever its normal: it drags
        limbs that lag behind (a leg swinging forward) onto the part of the surface they left
        uncovered.
    normal_cos: correspondences whose normals make a larger angle than arccos(normal_cos) are ignored.
    substeps: tracked times per frame interval (> 1 follows fast motion through times between
        frames, where the target can be evaluated there).
    """

    rigid_iterations: int = 6
    iterations: int = 16
    stiffness: tuple[float, float] = (10.0, 0.2)
    smoothness: float = 0.05
    velocity: float = 0.8
    max_distance: tuple[float, float] = (0.1, 0.03)
    rigid_distance: float = 0.4
    normal_pull: bool = True
    reverse_weight: float = 1.0
    coverage_weight: float = 4.0
    coverage_distance: float = 0.01
    reach: float = 0.2
    normal_cos: float = 0.3
    substeps: int = 1

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise Sv4dError(f"tracking needs at least one iteration, got {self.iterations}")
        if self.substeps < 1:
            raise Sv4dError(f"substeps must be at least 1, got {self.substeps}")
        if min(self.stiffness) <= 0 or self.smoothness < 0 or min(self.max_distance) <= 0:
            raise Sv4dError("stiffness and max_distance must be positive and smoothness not negative")


@dataclass
class FrameReport:
    """How a tracked frame matches its target surface (world units and fractions).

    distance_mean / distance_p95: from the tracked vertices to the target surface;
    uncovered: share of the target's vertices farther than ``tolerance`` from the tracked surface
        (parts of the surface the mesh does not reach: fast motion, or a part appearing);
    bridging: share of the tracked triangles whose centre is farther than ``tolerance`` from the
        target (the mesh spans space the surface has left: parts separating, a hole opening).
    """

    distance_mean: float
    distance_p95: float
    uncovered: float
    bridging: float
    tolerance: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class _Target:
    """A target surface's points and unit normals with a k-d tree."""

    def __init__(self, mesh: Mesh) -> None:
        if len(mesh.faces) == 0:
            raise Sv4dError("the target surface is empty")
        self.mesh = mesh
        self.points = mesh.vertices.astype(np.float64)
        self.normals = mesh.vertex_normals().astype(np.float64)
        self.tree = cKDTree(self.points)


def _normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    return Mesh(vertices, faces).vertex_normals().astype(np.float64)


class _Arap:
    """The as-rigid-as-possible term over the template's edges (uniform weights).

    Energy: sum over edges (i, j) of |(x_i - x_j) - (R_i + R_j) / 2 (p_i - p_j)|^2, with p the
    template (rest) positions and R_i the best rotation of vertex i's neighbourhood."""

    def __init__(self, rest: np.ndarray, faces: np.ndarray) -> None:
        self.rest = rest.astype(np.float64)
        e = mesh_edges(faces)
        self.i, self.j = e[:, 0], e[:, 1]
        n, m = len(rest), len(e)
        self.d = sparse.csr_matrix(
            (np.r_[np.ones(m), -np.ones(m)], (np.r_[np.arange(m), np.arange(m)], np.r_[self.i, self.j])), shape=(m, n)
        )
        self.laplacian = (self.d.T @ self.d).tocsr()
        self.rest_e = self.rest[self.i] - self.rest[self.j]
        self.edge_length = float(np.median(np.linalg.norm(self.rest_e, axis=1)))

    def rotations(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, 3) rotations best mapping each rest neighbourhood onto the current one."""
        cur_e = x[self.i] - x[self.j]
        outer = self.rest_e[:, :, None] * cur_e[:, None, :]
        s = np.zeros((len(x), 3, 3))
        np.add.at(s, self.i, outer)
        np.add.at(s, self.j, outer)
        u, _, vt = (a.numpy() for a in torch.linalg.svd(torch.from_numpy(s)))
        r = np.einsum("nji,nkj->nik", vt, u)  # V U^T
        bad = np.linalg.det(r) < 0
        if bad.any():
            u[bad, :, 2] *= -1
            r[bad] = np.einsum("nji,nkj->nik", vt[bad], u[bad])
        return r

    def rhs(self, r: np.ndarray) -> np.ndarray:
        """D^T of the rotated rest edges, (N, 3)."""
        re = 0.5 * np.einsum("nab,nb->na", r[self.i] + r[self.j], self.rest_e)
        return self.d.T @ re


def _pairs(x: np.ndarray, vn: np.ndarray, target: _Target, dmax: float, cos: float, reach: float = 0.0):
    """Closest-point pairs both ways whose normals agree within ``cos``: (vertex index, target index)
    from vertex to target, then from target to vertex; and the target points' raw nearest-vertex
    query (distance, vertex), answered up to max(``dmax``, ``reach``) (inf beyond)."""
    dist, q = target.tree.query(x, distance_upper_bound=dmax)
    ok = np.isfinite(dist)
    ok[ok] &= np.einsum("ij,ij->i", vn[ok], target.normals[q[ok]]) > cos
    fwd_v = np.flatnonzero(ok)
    fwd_q = q[ok]
    rdist, rv = cKDTree(x).query(target.points, distance_upper_bound=max(dmax, reach))
    rok = rdist <= dmax
    rok[rok] &= np.einsum("ij,ij->i", vn[rv[rok]], target.normals[rok]) > cos
    return (fwd_v, fwd_q), (rv[rok], np.flatnonzero(rok)), (rdist, rv)


def _mean_per_vertex(vertex: np.ndarray, points: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean of the ``points`` assigned to each of ``n`` vertices (by ``vertex``), for the vertices
    that have some: (means (K, 3), which (n,) bool)."""
    cnt = np.bincount(vertex, minlength=n).astype(np.float64)
    total = np.zeros((n, 3))
    np.add.at(total, vertex, points)
    has = cnt > 0
    return total[has] / cnt[has, None], has


def _rigid_step(x: np.ndarray, vi: np.ndarray, qi: np.ndarray, target: _Target) -> tuple[np.ndarray, np.ndarray]:
    """One point-to-plane rigid alignment (linearised rotation) of ``x`` over the pairs (vi, qi):
    the rotation (3, 3) and translation (3,) to apply (x @ r.T + t)."""
    if len(vi) < 6:
        return np.eye(3), np.zeros(3)
    p, q, n = x[vi], target.points[qi], target.normals[qi]
    a = np.concatenate([np.cross(p, n), n], 1)  # (P, 6): d residual / d (omega, t)
    b = -np.einsum("ij,ij->i", p - q, n)
    try:
        sol = np.linalg.solve(a.T @ a + 1e-9 * np.eye(6), a.T @ b)
    except np.linalg.LinAlgError:
        return np.eye(3), np.zeros(3)
    w, t = sol[:3], sol[3:]
    angle = float(np.linalg.norm(w))
    if angle > 1e-12:
        k = w / angle
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        r = np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx
    else:
        r = np.eye(3)
    return r, t


def _register(
    arap: _Arap,
    faces: np.ndarray,
    start: np.ndarray,
    predicted: np.ndarray,
    target: _Target,
    diagonal: float,
    opts: TrackingOptions,
) -> np.ndarray:
    """Vertex positions fitted to ``target`` from ``start`` (see the module's description): a few
    rigid point-to-plane rounds, then the non-rigid rounds."""
    from scipy.sparse.linalg import cg

    x = start.copy()
    n = len(x)
    dmax0 = diagonal * opts.rigid_distance
    for _ in range(opts.rigid_iterations):  # the bulk motion moves the prediction along
        (fv, fq), (rv, rq), _ = _pairs(x, _normals(x, faces), target, dmax0, opts.normal_cos)
        r, t = _rigid_step(x, np.r_[fv, rv], np.r_[fq, rq], target)
        x, predicted = x @ r.T + t, predicted @ r.T + t
    rounds = opts.iterations
    for it in range(rounds):
        a = it / max(rounds - 1, 1)
        alpha = opts.stiffness[0] * (opts.stiffness[1] / opts.stiffness[0]) ** a
        dmax = diagonal * (opts.max_distance[0] * (opts.max_distance[1] / opts.max_distance[0]) ** a)
        vn = _normals(x, faces)
        reach = opts.reach * diagonal if opts.coverage_weight > 0 else 0.0
        (fv, fq), (rv, rq), (near_d, near) = _pairs(x, vn, target, dmax, opts.normal_cos, reach)
        # vertex -> the target's tangent plane at its closest point
        qn = target.normals[fq]
        off = np.einsum("ij,ij->i", x[fv] - target.points[fq], qn)
        data = np.zeros((n, 3))
        weight = np.zeros(n)
        data[fv] += x[fv] - off[:, None] * qn
        weight[fv] += 1.0
        # target -> its closest vertex: pulls the mesh over parts of the target it does not reach yet
        mean, has_r = _mean_per_vertex(rv, target.points[rq], n)
        pull = mean - x[has_r]
        if opts.normal_pull:  # along the vertex normal only: no sliding towards denser target parts
            nrm = vn[has_r]
            pull = np.einsum("ij,ij->i", pull, nrm)[:, None] * nrm
        data[has_r] += opts.reverse_weight * (x[has_r] + pull)
        weight += opts.reverse_weight * has_r
        if opts.coverage_weight > 0:  # target parts no vertex is near: pull the nearest vertex to them
            far = (near_d <= reach) & (near_d > max(opts.coverage_distance * diagonal, arap.edge_length))
            mean, has_c = _mean_per_vertex(near[far], target.points[far], n)
            data[has_c] += opts.coverage_weight * mean
            weight += opts.coverage_weight * has_c
        w = (weight > 0).astype(np.float64)
        data[weight > 0] /= weight[weight > 0, None]
        # local step (rotations), then the global solve, warm-started from the current positions
        r = arap.rotations(x)
        mu = opts.smoothness
        lhs = (alpha * arap.laplacian + sparse.diags(w + mu)).tocsr()
        rhs = alpha * arap.rhs(r) + w[:, None] * data + mu * predicted
        jacobi = sparse.diags(1.0 / lhs.diagonal())
        x = np.stack([cg(lhs, rhs[:, c], x0=x[:, c], rtol=1e-6, maxiter=300, M=jacobi)[0] for c in range(3)], 1)
    return x


def surface_report(
    vertices: np.ndarray, faces: np.ndarray, target: Mesh | _Target, diagonal: float, tolerance: float = 0.02
) -> FrameReport:
    """How the tracked positions ``vertices`` (of the template's ``faces``) match ``target``;
    ``tolerance``: a fraction of ``diagonal``, but at least the target's vertex spacing and half the
    mesh's median edge (what the meshes themselves resolve)."""
    tgt = target if isinstance(target, _Target) else _Target(target)

    def to_target(p: np.ndarray) -> np.ndarray:
        d, q = tgt.tree.query(p)
        plane = np.abs(np.einsum("ij,ij->i", p - tgt.points[q], tgt.normals[q]))
        return np.minimum(d, plane)  # the surface lies between nearby target vertices

    d = to_target(vertices)
    # no finer than the meshes themselves: the target's vertex spacing (about a grid cell) and
    # half the tracked mesh's edges
    edges = mesh_edges(faces)
    spacing = max(
        float(np.median(np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1))) / 2,
        float(np.median(tgt.tree.query(tgt.points[:: max(1, len(tgt.points) // 2000)], k=2)[0][:, 1])),
    )
    tol = max(tolerance * diagonal, spacing)
    back = cKDTree(_surface_points(vertices, faces)).query(tgt.points)[0]
    centres = to_target(vertices[faces].mean(1))
    rep = FrameReport(
        distance_mean=float(d.mean()),
        distance_p95=float(np.percentile(d, 95)),
        uncovered=float((back > tol).mean()),
        bridging=float((centres > tol).mean()),
        tolerance=float(tol),
    )
    if rep.uncovered > 0.05:
        rep.notes.append(
            f"{rep.uncovered:.0%} of the surface is not followed by the mesh (fast motion, or a part appearing)"
        )
    if rep.bridging > 0.03:
        rep.notes.append(
            f"{rep.bridging:.0%} of the mesh's triangles span space the surface has left: a topology change "
            "(parts separating, a hole opening) that one mesh cannot follow"
        )
    return rep


def _surface_points(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The vertices plus the face centres and edge midpoints (a denser sampling of the surface)."""
    t = vertices[faces]
    return np.concatenate([vertices, t.mean(1), 0.5 * (t[:, 0] + t[:, 1]), 0.5 * (t[:, 1] + t[:, 2])])


def track_surfaces(
    template: Mesh,
    target_at: Callable[[float], Mesh],
    times: Sequence[float],
    reference: int,
    options: TrackingOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, list[FrameReport]]:
    """Carry ``template`` (the surface at ``times[reference]``) through every time in ``times``.

    target_at: a time -> the target surface then (the field's iso-surface).
    times: the frames' times, increasing (whatever unit ``target_at`` takes).
    progress: called with 1 after each frame is tracked.

    Returns (vertices (F, N, 3) float32, one :class:`FrameReport` per frame). Frames after the
    reference are tracked forward from it, frames before it backward.
    """
    opts = options or TrackingOptions()
    times = [float(t) for t in times]
    nf = len(times)
    if not 0 <= reference < nf:
        raise Sv4dError(f"reference frame {reference} is not among the {nf} frames")
    rest = template.vertices.astype(np.float64)
    faces = template.faces
    diagonal = float(np.linalg.norm(rest.max(0) - rest.min(0)))
    if not diagonal > 0:
        raise Sv4dError("the template mesh has no extent")
    arap = _Arap(rest, faces)
    out = np.zeros((nf, len(rest), 3))
    out[reference] = rest
    reports: list[FrameReport | None] = [None] * nf
    reports[reference] = surface_report(rest, faces, target_at(times[reference]), diagonal)
    if progress:
        progress(1)
    for order in (range(reference + 1, nf), range(reference - 1, -1, -1)):
        prev, before = rest, rest
        last_t = times[reference]
        for k in order:
            tgt = None
            for s in range(1, opts.substeps + 1):
                t = last_t + (times[k] - last_t) * s / opts.substeps
                tgt = _Target(target_at(t))
                pred = prev + opts.velocity * (prev - before)
                x = _register(arap, faces, pred, pred, tgt, diagonal, opts)
                before, prev = prev, x
            last_t = times[k]
            out[k] = prev
            reports[k] = surface_report(prev, faces, tgt, diagonal)
            if progress:
                progress(1)
    return out.astype(np.float32), [r for r in reports if r is not None]


def mesh_quality(vertices: np.ndarray, faces: np.ndarray, rest: int = 0) -> dict:
    """Per-frame health of a tracked mesh (vertices (F, N, 3)): the share of degenerate triangles
    (area under 1e-4 of the frame's mean), of folded ones (normal against the mean of its corners'
    normals), and the edge-length distortion against frame ``rest``: sum |l - l_rest| / sum l_rest
    (length-weighted, so the decimation's few tiny edges do not dominate) and the 95th percentile
    of |l / l_rest - 1|."""
    edges = mesh_edges(faces)
    rest_len = np.linalg.norm(vertices[rest][edges[:, 0]] - vertices[rest][edges[:, 1]], axis=1)
    rest_len = np.maximum(rest_len, 1e-12)
    degenerate, folded, distortion, distortion_p95 = [], [], [], []
    for v in vertices.astype(np.float64):
        t = v[faces]
        fn = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
        area = 0.5 * np.linalg.norm(fn, axis=1)
        vn = Mesh(v, faces).vertex_normals().astype(np.float64)
        corner = vn[faces].sum(1)
        degenerate.append(float((area < 1e-4 * area.mean()).mean()))
        folded.append(float((np.einsum("ij,ij->i", fn, corner) < 0).mean()))
        length = np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)
        distortion.append(float(np.abs(length - rest_len).sum() / rest_len.sum()))
        distortion_p95.append(float(np.percentile(np.abs(length / rest_len - 1), 95)))
    per_frame = {
        "degenerate_fraction": degenerate,
        "folded_fraction": folded,
        "edge_distortion": distortion,
        "edge_distortion_p95": distortion_p95,
    }
    return {**per_frame, "worst": {k: max(v) for k, v in per_frame.items()}}
