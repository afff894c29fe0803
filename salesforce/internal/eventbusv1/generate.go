// Package eventbusv1 holds the generated protobuf and gRPC code for the
// part of Salesforce's Pub/Sub API (eventbus.v1) that crmsync uses.
package eventbusv1

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative eventbus.proto
