"""Stage hashes ignore recipe keys added later while they hold their default (earlier builds stay cached)."""

from pocketvit.recipe.schema import DataSection, Recipe, TeacherSection, stable_dump


def test_added_keys_at_their_default_are_left_out_of_stage_hashes():
    r = Recipe(name="x")
    data = stable_dump(r.data)
    assert not set(DataSection.added_fields) & set(data)
    assert "crop_scale" not in data["augment"] and data["augment"]["shift"] == 2
    assert data == {k: v for k, v in r.data.model_dump().items() if k not in DataSection.added_fields} | {
        "augment": {k: v for k, v in r.data.augment.model_dump().items()
                    if k not in type(r.data.augment).added_fields}}
    assert set(stable_dump(r.teacher)) == set(r.teacher.model_dump()) - set(TeacherSection.added_fields)


def test_added_keys_count_once_set():
    r = Recipe(name="x", data={"dataset": "image-folder", "image_size": 96, "augment": {"randaug_ops": 2}},
               teacher={"arch": "efficientnet-lite:lite0", "pretrained": True})
    data = stable_dump(r.data)
    assert data["image_size"] == 96 and data["augment"]["randaug_ops"] == 2 and "views" not in data
    assert stable_dump(r.teacher)["pretrained"] is True
