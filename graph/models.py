"""The knowledge graph (neomodel on Neo4j), derived from the relational database.

Keys: `uid` on every node is the relational primary key (as a string), or for segments
"<recording id>:<index>", so the graph can always be rebuilt from the database.
"""

from neomodel import (
    FloatProperty,
    IntegerProperty,
    RelationshipTo,
    StringProperty,
    StructuredNode,
)


class User(StructuredNode):
    uid = StringProperty(unique_index=True, required=True)
    username = StringProperty()

    recordings = RelationshipTo("Recording", "OWNS")


class Recording(StructuredNode):
    uid = StringProperty(unique_index=True, required=True)
    title = StringProperty()
    duration = FloatProperty()
    language = StringProperty()
    created_at = StringProperty()

    segments = RelationshipTo("Segment", "HAS_SEGMENT")


class Segment(StructuredNode):
    uid = StringProperty(unique_index=True, required=True)
    index = IntegerProperty(index=True)
    start = FloatProperty()
    end = FloatProperty()
    text = StringProperty()

    next = RelationshipTo("Segment", "NEXT")
