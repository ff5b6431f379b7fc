"""The knowledge graph's schema (neomodel on Neo4j 5), derived from the relational database.

Keys: `uid` on every node is unique. Users and recordings use the relational primary key (as a
string), segments "<recording id>:<index>", and the nodes merged per user (speakers, entities,
topics) the SHA-256 of the owner, the kind and the normalised name (writes.node_uid), so the graph can always be rebuilt from
the database and a URL never carries a name. Every node but User carries `owner` (the user's uid):
each read is scoped by it, and the full-text indexes include it so a search never leaves the user's
own nodes.

The classes are named ...Node so that they never shadow the relational models of the same name
(transcription.models.Recording and Segment); their Neo4j labels are the plain names.
"""

from neomodel import (
    ArrayProperty,
    FloatProperty,
    IntegerProperty,
    RelationshipTo,
    StringProperty,
    StructuredNode,
    StructuredRel,
)


class Mention(StructuredRel):
    count = IntegerProperty()
    segments = ArrayProperty(IntegerProperty())  # indexes of the segments that say it


class Weighted(StructuredRel):
    weight = FloatProperty()


class UserNode(StructuredNode):
    __label__ = "User"

    uid = StringProperty(unique_index=True, required=True)
    username = StringProperty()

    recordings = RelationshipTo("RecordingNode", "OWNS")


class RecordingNode(StructuredNode):
    __label__ = "Recording"

    uid = StringProperty(unique_index=True, required=True)
    owner = StringProperty(index=True)
    title = StringProperty()
    duration = FloatProperty()
    language = StringProperty()
    created_at = StringProperty()

    segments = RelationshipTo("SegmentNode", "HAS_SEGMENT")
    entities = RelationshipTo("EntityNode", "MENTIONS", model=Mention)
    speakers = RelationshipTo("SpeakerNode", "HAS_SPEAKER")
    topics = RelationshipTo("TopicNode", "ABOUT", model=Weighted)


class SegmentNode(StructuredNode):
    __label__ = "Segment"

    uid = StringProperty(unique_index=True, required=True)
    owner = StringProperty(index=True)
    recording = StringProperty()
    index = IntegerProperty(index=True)
    start = FloatProperty()
    end = FloatProperty()
    text = StringProperty()

    next = RelationshipTo("SegmentNode", "NEXT")
    speaker = RelationshipTo("SpeakerNode", "SPOKEN_BY")


class SpeakerNode(StructuredNode):
    __label__ = "Speaker"

    uid = StringProperty(unique_index=True, required=True)
    owner = StringProperty(index=True)
    name = StringProperty()


class EntityNode(StructuredNode):
    __label__ = "Entity"

    uid = StringProperty(unique_index=True, required=True)
    owner = StringProperty(index=True)
    name = StringProperty()
    key = StringProperty()  # the normalised name it is merged on
    type = StringProperty()

    co_occurs = RelationshipTo("EntityNode", "CO_OCCURS", model=Weighted)


class TopicNode(StructuredNode):
    __label__ = "Topic"

    uid = StringProperty(unique_index=True, required=True)
    owner = StringProperty(index=True)
    name = StringProperty()


# Neo4j's Lucene indexes: segment text and entity names, each with the owner so that a query
# carries "owner:<uid>" and Lucene itself keeps to the user's nodes. Installed by graph_schema.
FULLTEXT_INDEXES = {
    "segment_text": ("Segment", ["text", "owner"]),
    "entity_name": ("Entity", ["name", "owner"]),
}
