"""The CSDL `$metadata` document and the service document, both generated from the model."""
from __future__ import annotations

import functools
from xml.etree import ElementTree as ET

from .model import COMPLEX_TYPES, CONTAINER_NAME, DECIMAL, ENTITY_TYPES, NAMESPACE, EntitySet, Property, entity_sets

EDMX_NS = "http://docs.oasis-open.org/odata/ns/edmx"
EDM_NS = "http://docs.oasis-open.org/odata/ns/edm"
CORE_VOCABULARY = "https://oasis-tcs.github.io/odata-vocabularies/vocabularies/Org.OData.Core.V1.xml"
COMPUTED_TERM = "Org.OData.Core.V1.Computed"


def _property(parent: ET.Element, prop: Property) -> None:
    attrs = {"Name": prop.name, "Type": prop.type_name}
    if not prop.collection:
        # For a collection, Nullable would speak of its items; the collection itself is never null.
        attrs["Nullable"] = "true" if prop.nullable else "false"
    if prop.edm_type == DECIMAL:
        attrs["Scale"] = "variable"
    element = ET.SubElement(parent, "Property", attrs)
    if prop.computed:
        ET.SubElement(element, "Annotation", {"Term": COMPUTED_TERM, "Bool": "true"})


def metadata_xml() -> bytes:
    """The OData v4 CSDL document (UTF-8 XML), served at `$metadata` as application/xml."""
    return _metadata_xml(tuple(ENTITY_TYPES.values()), tuple(entity_sets().values()))


# Keyed by the model itself: built once per process, and again only if the feed table or the types change.
@functools.lru_cache(maxsize=4)
def _metadata_xml(entity_types: tuple, sets: tuple[EntitySet, ...]) -> bytes:
    # Prefixed names are written literally (no ElementTree namespace registry: no global state).
    root = ET.Element("edmx:Edmx", {"xmlns:edmx": EDMX_NS, "Version": "4.0"})
    reference = ET.SubElement(root, "edmx:Reference", {"Uri": CORE_VOCABULARY})
    ET.SubElement(reference, "edmx:Include", {"Namespace": "Org.OData.Core.V1", "Alias": "Core"})
    services = ET.SubElement(root, "edmx:DataServices")
    schema = ET.SubElement(services, "Schema", {"xmlns": EDM_NS, "Namespace": NAMESPACE})
    for complex_type in COMPLEX_TYPES:
        element = ET.SubElement(schema, "ComplexType", {"Name": complex_type.name})
        for prop in complex_type.properties:
            _property(element, prop)
    for entity_type in entity_types:
        element = ET.SubElement(schema, "EntityType", {"Name": entity_type.name})
        key = ET.SubElement(element, "Key")
        for prop in entity_type.keys:
            ET.SubElement(key, "PropertyRef", {"Name": prop.name})
        for prop in entity_type.properties:
            _property(element, prop)
    container = ET.SubElement(schema, "EntityContainer", {"Name": CONTAINER_NAME})
    for entity_set in sets:
        ET.SubElement(container, "EntitySet", {"Name": entity_set.name,
                                               "EntityType": entity_set.entity_type.qualified_name})
    ET.indent(root)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode").encode("utf-8")


def service_document(base_url: str) -> dict:
    """The JSON service document served at the service root."""
    base = base_url.rstrip("/")
    return {
        "@odata.context": f"{base}/$metadata",
        "value": [{"name": s.name, "kind": "EntitySet", "url": s.name} for s in entity_sets().values()],
    }


def context_url(base_url: str, entity_set: str, select: tuple[str, ...] | None = None) -> str:
    """`@odata.context` of a collection response: `{base}/$metadata#PstnCalls` or `...#PstnCalls(id,duration)`."""
    base = base_url.rstrip("/")
    suffix = f"({','.join(select)})" if select else ""
    return f"{base}/$metadata#{entity_set}{suffix}"
