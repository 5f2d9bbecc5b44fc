"""Prints pairwatch.v1.ChatEvents as protobuf's own JSON printer writes them.

Usage: print_events.py DESCRIPTOR_SET < events
Reads one ChatEvent per line of standard input, its wire bytes in hex, and writes for
each event and each printer setting one line: `<event number> <setting> <JSON>`.
The message class comes from the build's descriptor set, so no generated code is needed.
"""
import json
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf import timestamp_pb2

# The printer settings a backend may use (protobuf >= 5.26 names the last option
# always_print_fields_with_no_presence).
SETTINGS = {
    "default": {},
    "proto_names": {"preserving_proto_field_name": True},
    "enum_numbers": {"use_integers_for_enums": True},
    "all_fields": {"always_print_fields_with_no_presence": True},
    "all_options": {
        "preserving_proto_field_name": True,
        "use_integers_for_enums": True,
        "always_print_fields_with_no_presence": True,
    },
}


def chat_event_class(path):
    files = descriptor_pb2.FileDescriptorSet()
    with open(path, "rb") as f:
        files.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    names = {f.name for f in files.file}
    if timestamp_pb2.DESCRIPTOR.name not in names:
        pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    # protoc --include_imports lists a file after the files it imports.
    for f in files.file:
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("pairwatch.v1.ChatEvent"))


def main():
    chat_event = chat_event_class(sys.argv[1])
    for number, line in enumerate(l for l in sys.stdin.read().split() if l):
        event = chat_event.FromString(bytes.fromhex(line))
        for name, options in SETTINGS.items():
            # Both entry points of the printer: a JSON string, and a dict to dump.
            if name == "all_options":
                text = json.dumps(json_format.MessageToDict(event, **options), ensure_ascii=False)
            else:
                text = json_format.MessageToJson(event, indent=None, **options)
            print(number, name, text)


if __name__ == "__main__":
    main()
