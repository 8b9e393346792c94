import numpy as np
import pytest

from sklearn_clip._classify.prompts import (
    OPENAI_IMAGENET_7_TEMPLATES,
    OPENAI_IMAGENET_TEMPLATES,
    TEMPLATE_SETS,
    check_template,
    class_embeddings,
    class_prompts,
    ensemble,
    label_space,
    prompt_names,
    resolve_templates,
)


def test_builtin_sets_are_valid_and_distinct():
    assert len(OPENAI_IMAGENET_TEMPLATES) == 80
    assert len(set(OPENAI_IMAGENET_TEMPLATES)) == 80
    assert len(OPENAI_IMAGENET_7_TEMPLATES) == 7
    assert set(OPENAI_IMAGENET_7_TEMPLATES) <= set(OPENAI_IMAGENET_TEMPLATES)
    assert TEMPLATE_SETS["simple"] == ("a photo of a {}.",)
    for templates in TEMPLATE_SETS.values():
        assert resolve_templates(templates) == templates
    with pytest.raises(TypeError):
        TEMPLATE_SETS["mine"] = ("{}",)


@pytest.mark.parametrize(
    "template", ["{}", "a photo of a {}.", "{{literal}} braces and a {}", "{} "]
)
def test_check_template_accepts_one_placeholder(template):
    assert check_template(template) == template


@pytest.mark.parametrize(
    ("template", "found"),
    [
        ("a photo", "no placeholder"),
        ("{{}} is literal", "no placeholder"),
        ("a {} and a {}", "2 fields"),
        ("a photo of a {label}", "named, numbered or formatted"),
        ("a photo of a {0}", "named, numbered or formatted"),
        ("a photo of a {!r}", "named, numbered or formatted"),
        ("a photo of a {:>10}", "named, numbered or formatted"),
    ],
)
def test_check_template_rejects_other_placeholders(template, found):
    with pytest.raises(ValueError, match=f"exactly one '{{}}' placeholder.*{found}"):
        check_template(template)


def test_check_template_rejects_broken_format_and_non_strings():
    with pytest.raises(ValueError, match="not a valid format string"):
        check_template("a photo of a {")
    with pytest.raises(TypeError, match="must be a str"):
        check_template(lambda name: f"a photo of a {name}")


def test_resolve_templates_forms():
    assert resolve_templates("openai_imagenet_7") == OPENAI_IMAGENET_7_TEMPLATES
    assert resolve_templates("a {}.") == ("a {}.",)
    assert resolve_templates(["a {}.", "the {}."]) == ("a {}.", "the {}.")
    assert resolve_templates(None) == ()
    with pytest.raises(ValueError, match="neither a built-in set"):
        resolve_templates("openai_imagnet")
    with pytest.raises(ValueError, match="templates is empty"):
        resolve_templates([])
    with pytest.raises(ValueError, match=r"'the \{x\}'"):
        resolve_templates(["a {}.", "the {x}"])


def test_class_prompts_fill_templates_then_add_descriptions():
    prompts = class_prompts(
        np.array(["cat", "dog"]),
        ("a {}.", "the {}!"),
        {"cat": "tabby cat", "dog": "dog"},
        {"dog": ["a dog on grass"], "cat": "a cat asleep"},
    )
    assert prompts == [
        ["a tabby cat.", "the tabby cat!", "a cat asleep"],
        ["a dog.", "the dog!", "a dog on grass"],
    ]


def test_class_prompts_errors():
    with pytest.raises(ValueError, match=r"not classes: \['cow'\]"):
        class_prompts(["cat"], ("{}",), {"cat": "cat"}, {"cow": "a cow"})
    with pytest.raises(ValueError, match="class 'dog' has no prompt"):
        class_prompts(["cat", "dog"], (), {}, {"cat": "a cat"})
    with pytest.raises(ValueError, match="non-empty list of str"):
        class_prompts(["cat"], ("{}",), {"cat": "cat"}, {"cat": []})


def test_ensemble_is_the_renormalised_mean_of_unit_vectors():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(7, 5)).astype(np.float32)
    original = embeddings.copy()
    result = ensemble(embeddings, [3, 1, 3])
    np.testing.assert_array_equal(embeddings, original)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    for row, group in enumerate([unit[:3], unit[3:4], unit[4:]]):
        mean = group.mean(axis=0)
        np.testing.assert_allclose(result[row], mean / np.linalg.norm(mean), atol=1e-6)
    assert result.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result, axis=1), 1, atol=1e-6)


class _CountingHandle:
    def __init__(self, handle):
        self.handle, self.calls = handle, []

    def encode_texts(self, texts, **kwargs):
        self.calls.append(list(texts))
        return self.handle.encode_texts(texts, **kwargs)


def test_class_embeddings_encode_all_prompts_in_one_call(tiny_clip):
    spy = _CountingHandle(tiny_clip)
    prompts = class_prompts(
        ["cat", "dog", "red circle"],
        resolve_templates("openai_imagenet_7"),
        {"cat": "cat", "dog": "dog", "red circle": "red circle"},
    )
    result = class_embeddings(spy, prompts, batch_size=5)
    assert len(spy.calls) == 1 and len(spy.calls[0]) == 21
    assert result.shape == (3, tiny_clip.embedding_dim)
    one_by_one = [tiny_clip.encode_texts(own).mean(axis=0) for own in prompts]
    one_by_one = [v / np.linalg.norm(v) for v in one_by_one]
    np.testing.assert_allclose(result, one_by_one, atol=1e-6)


def test_label_space_from_candidates_or_y():
    classes, names = label_space(["dog", "cat"], None, label_list=True)
    assert classes.tolist() == ["cat", "dog"] and names is None
    classes, names = label_space({1: "one", 0: "zero"}, [0, 1, 1], label_list=False)
    assert classes.tolist() == [0, 1] and names == {1: "one", 0: "zero"}
    classes, _ = label_space(
        None, np.array(["b", "a", "b"], dtype=object), label_list=0
    )
    assert classes.tolist() == ["a", "b"]


def test_label_space_errors():
    with pytest.raises(ValueError, match=r"not in candidate_labels: \['cow'\]"):
        label_space(["cat", "dog"], ["cat", "cow"], label_list=False)
    with pytest.raises(ValueError, match="cross_val_predict"):
        label_space(["cat", "dog"], [0, 1], label_list=False)
    with pytest.raises(ValueError, match="needs a label space"):
        label_space(None, None, label_list=True)
    with pytest.raises(ValueError, match="at least two classes"):
        label_space(["cat"], None, label_list=True)
    with pytest.raises(ValueError, match="mixes string and non-string"):
        label_space(["cat", 1], None, label_list=True)


def test_prompt_names_need_strings():
    assert prompt_names(np.array(["a", "b"]), None, "simple") == {"a": "a", "b": "b"}
    with pytest.raises(
        ValueError, match=r"\[0, 1\] are not strings.*cross_val_predict"
    ):
        prompt_names(np.array([0, 1]), None, "simple")
    assert prompt_names(np.array([0, 1]), None, None) == {0: 0, 1: 1}
    with pytest.raises(ValueError, match="must be strings"):
        prompt_names(np.array([0, 1]), {0: "zero", 1: 1}, "simple")


def test_fit_none_with_a_long_label_list_does_not_warn(recwarn):
    labels = [f"class {i}" for i in range(30)]
    classes, _ = label_space(None, labels, label_list=True)
    assert len(classes) == 30
    assert not [w for w in recwarn if "unique classes" in str(w.message)]
