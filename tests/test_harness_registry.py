import pytest

from harness.plugins import load_plugin
from harness.registry import PluginError, Registry, RegistryError, attributed_to


def test_double_registration_names_both_sources():
    reg = Registry("solver")
    with attributed_to("plugin file a.py"):
        reg.add("heun", object)
    with attributed_to("plugin file b.py"):
        with pytest.raises(RegistryError) as exc:
            reg.add("heun", object)
    assert "a.py" in str(exc.value) and "b.py" in str(exc.value)
    assert "registered twice" in str(exc.value)


def test_unknown_name_lists_the_valid_ones():
    reg = Registry("problem")
    reg.add("kepler", object, "x")
    reg.add("arenstorf", object, "x")
    with pytest.raises(RegistryError, match="valid problems: arenstorf, kepler"):
        reg.get("keppler")


@pytest.mark.parametrize("name", ["", " x", "a,b"])
def test_bad_names_are_refused(name):
    with pytest.raises(RegistryError, match="invalid solver name"):
        Registry("solver").add(name, object, "x")


def test_plugin_file_that_fails_to_import_names_file_and_error(tmp_path):
    bad = tmp_path / "broken_plugin.py"
    bad.write_text("import numpy\nraise RuntimeError('boom at import')\n")
    with pytest.raises(PluginError) as exc:
        load_plugin(str(bad))
    assert "broken_plugin.py" in str(exc.value) and "boom at import" in str(exc.value)


def test_missing_plugin_file_and_module():
    with pytest.raises(PluginError, match="does not exist"):
        load_plugin("no/such/plugin.py")
    with pytest.raises(PluginError, match="no_such_module_xyz"):
        load_plugin("no_such_module_xyz")
