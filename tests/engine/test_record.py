"""integration/engine/record.py: the dataclass subset the start-up modules use."""
import pytest

from integration.engine.record import field, fields, record


@record
class Point:
    x: int
    y: int = 0
    tags: list = field(default_factory=list)
    secret: str | None = field(default=None, repr=False)


def test_init_defaults_factories_and_errors():
    a, b = Point(1), Point(1)
    assert (a.x, a.y, a.tags, a.secret) == (1, 0, [], None)
    a.tags.append("t")
    assert b.tags == []  # a factory per instance, never a shared list
    assert Point(1, 2).y == 2 and Point(x=3, secret="s").secret == "s"
    with pytest.raises(TypeError, match="missing required argument: 'x'"):
        Point()
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        Point(1, z=2)
    with pytest.raises(TypeError, match="multiple values"):
        Point(1, x=2)


def test_repr_hides_fields_declared_repr_false_and_eq_replace_fields():
    p = Point(1, secret="hunter2")
    assert "hunter2" not in repr(p) and repr(p) == "Point(x=1, y=0, tags=[])"
    assert p == Point(1, secret="hunter2") and p != Point(2, secret="hunter2")
    q = p.replace(y=5)
    assert (q.x, q.y, q.secret) == (1, 5, "hunter2") and p.y == 0
    assert [f.name for f in fields(Point)] == ["x", "y", "tags", "secret"]
    assert fields(p)[1].default == 0


def test_config_keeps_its_secrets_out_of_repr():
    from integration.engine.config import Config

    c = Config(client_secret="s3cr3t-value", bot_secret="b0t-value", tenant_id="t")
    assert "s3cr3t" not in repr(c) and "b0t-value" not in repr(c) and "tenant_id='t'" in repr(c)
