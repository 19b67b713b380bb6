"""Built-in materials and structures read from CIF files."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.sim.physics.clusters import build_sphere_cluster
from qdots_bluesky.sim.physics.dse import debye_pattern
from qdots_bluesky.sim.physics.form_factors import anomalous_dispersion, atomic_number
from qdots_bluesky.sim.physics.materials import builtin_materials, get_structure, load_cif
from qdots_bluesky.sim.physics.pair_histogram import lattice_pair_histogram

PBS_CIF = """data_PbS
_cell_length_a 5.934
_cell_length_b 5.934
_cell_length_c 5.934
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'F m -3 m'
_symmetry_Int_Tables_number 225
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
_atom_site_B_iso_or_equiv
Pb1 Pb 0 0 0 1.0 1.32
S1 S 0.5 0.5 0.5 1.0 1.49
"""


def test_builtin_materials():
    m = builtin_materials()
    assert set(m) == {"PbS", "PbSe", "CdSe"}
    pbs = get_structure("pbs")
    assert pbs.elements == ("Pb", "S") and pbs.cell_volume_a3 == pytest.approx(5.934**3 / 4)
    assert dict(zip(pbs.elements, pbs.b_iso)) == {"Pb": 1.32, "S": 1.49}
    cdse = get_structure("CdSe")
    # zinc blende: Se at (1/4, 1/4, 1/4) of the cubic cell, nearest Cd-Se at a sqrt(3)/4
    d = np.linalg.norm(cdse.cartesian_positions()[1] - cdse.cartesian_positions()[0])
    assert d == pytest.approx(6.077 * np.sqrt(3) / 4)


def test_anomalous_dispersion_of_lead_at_the_reference_wavelength():
    f1, f2 = anomalous_dispersion("Pb", 0.56)
    assert f1 == pytest.approx(-1.16, abs=0.05) and f2 == pytest.approx(7.0, abs=0.1)


def test_cif_structure_gives_the_same_cluster_and_pattern_as_the_builtin(tmp_path):
    path = tmp_path / "pbs.cif"
    path.write_text(PBS_CIF)
    cif = load_cif(path)
    assert cif.n_sites == 8 and sorted(cif.elements) == ["Pb"] * 4 + ["S"] * 4
    assert dict(zip(cif.elements, cif.b_iso)) == {"Pb": 1.32, "S": 1.49}
    q = np.linspace(1, 15, 500)
    a = build_sphere_cluster(cif, 2.5)
    b = build_sphere_cluster(get_structure("PbS"), 2.5)
    assert a.n_atoms == b.n_atoms
    pa = debye_pattern(lattice_pair_histogram(a), q).total
    pb = debye_pattern(lattice_pair_histogram(b), q).total
    np.testing.assert_allclose(pa, pb, rtol=1e-6)


@pytest.mark.parametrize("text,words", [
    ("this is not a cif", "cannot read CIF"),
    ("", "cannot read CIF"),
])
def test_unreadable_cif(tmp_path, text, words):
    path = tmp_path / "bad.cif"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_cif(path)
    assert words in str(info.value) and str(path) in str(info.value)


def test_unknown_material_and_element():
    with pytest.raises(ValueError, match="accepted: PbS, PbSe, CdSe"):
        get_structure("unobtainium")
    with pytest.raises(ValueError, match="unknown element"):
        atomic_number("Xx")
    with pytest.raises(ValueError, match="does not exist"):
        get_structure("/no/such/file.cif")
