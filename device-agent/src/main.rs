//! `shiftnas-agent`: measures ONNX model latency on a board.
fn main() {}
