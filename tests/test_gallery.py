"""docs/gallery.py writes a family's picture, and every picture the README's gallery shows is committed."""
import importlib.util
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _gallery_module():
    spec = importlib.util.spec_from_file_location("gallery", os.path.join(ROOT, "docs", "gallery.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gallery_script_writes_the_final_grid(tmp_path, capsys):
    assert _gallery_module().main([f"--out={tmp_path}", "--steps=20", "--only=ae"]) == 0
    assert (tmp_path / "ae.png").stat().st_size > 0
    assert "configs/ae.py, 20 steps" in capsys.readouterr().out


def test_readme_gallery_pictures_exist():
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme[readme.index("<!-- gallery:start -->"):readme.index("<!-- gallery:end -->")]
    pictures = re.findall(r'src="(docs/gallery/[^"]+\.png)"', section)
    assert len(pictures) >= 7
    assert [p for p in pictures if not os.path.isfile(os.path.join(ROOT, p))] == []
    names = set(_gallery_module().GALLERY)
    assert {os.path.basename(p)[:-4] for p in pictures if "_mnist" not in p} == names
