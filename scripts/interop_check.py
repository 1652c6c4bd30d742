#!/usr/bin/env python3
"""Drives a running creator-boost with Google's gRPC implementation (grpcio),
using only server reflection: list services, describe the service, record
events and call Rank through dynamically built messages, check health.

    pip install grpcio grpcio-reflection grpcio-health-checking protobuf
    python3 scripts/interop_check.py 127.0.0.1:50051
"""
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

SERVICE = "creatorboost.v1.CreatorBoost"


def main(target: str) -> int:
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=10)

    reflection = ProtoReflectionDescriptorDatabase(channel)
    services = reflection.get_services()
    print("services:", ", ".join(services))
    assert SERVICE in services, services

    pool = descriptor_pool.DescriptorPool(reflection)
    service = pool.FindServiceByName(SERVICE)
    print("describe", SERVICE)
    for method in service.methods:
        print(f"  rpc {method.name}({method.input_type.full_name}) returns ({method.output_type.full_name})")

    def message(name):
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))

    def call(method_name, request):
        method = service.methods_by_name[method_name]
        stub = channel.unary_unary(
            f"/{SERVICE}/{method_name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message(method.output_type.full_name).FromString,
        )
        return stub(request, timeout=5)

    Record = message("creatorboost.v1.RecordEventsRequest")
    events = Record()
    for i, kind in enumerate(["FOLLOW", "VIEW", "LIKE", "SHARE", "TIP"]):
        event = events.events.add()
        event.event_id = f"interop-{i}"
        event.kind = pool.FindEnumTypeByName("creatorboost.v1.EventKind").values_by_name[kind].number
        event.viewer_id = 42
        event.creator_id = 4242
        event.amount = 10.0 if kind == "TIP" else 0.0
    recorded = call("RecordEvents", events)
    print(f"RecordEvents: accepted={recorded.accepted} duplicates={recorded.duplicates}")

    Rank = message("creatorboost.v1.RankRequest")
    rank = Rank(viewer_id=42, explain=True)
    for item, creator in [(1, 4242), (2, 99999)]:
        candidate = rank.candidates.add()
        candidate.item_id, candidate.creator_id, candidate.base_score = item, creator, 1.0
    ranked = call("Rank", rank)
    print(f"Rank: model_version={ranked.model_version} degraded={ranked.degraded}")
    for r in ranked.results:
        print(f"  item {r.item_id} creator {r.creator_id} boost {r.boost:.4f} final {r.final_score:.4f}")
    assert [r.item_id for r in ranked.results] == [1, 2]
    assert ranked.results[0].boost > 1.0 and ranked.results[1].boost == 1.0

    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
    print("health:", health_pb2.HealthCheckResponse.ServingStatus.Name(status.status))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    print("interop check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"))
