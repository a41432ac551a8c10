// tests/held_grpc_streams.h — a raw HTTP/2 client that opens gRPC streams and sends each a big
// message but its last byte, then holds them open: what any client that can reach a gRPC server
// (with no key, no valid request, nothing but a socket) can make it buffer. gRPC reads a unary
// request's whole message before its handler runs, so no handler ever sees these.
//
//   HeldGrpcStreams held;
//   ASSERT_TRUE(held.Connect(port).ok());
//   for (int i = 0; i < 40 && held.usable(); ++i) {
//     held.Hold("/txfn.v1.Functions/Mutation", 16 << 20);
//   }
//   // ... the server now buffers what was sent, unless it refused it (held.refused())
//
// Not thread-safe; blocking (each send waits for the server's flow-control window, up to a stall
// limit). Speaks just enough HTTP/2: SETTINGS (acknowledged, window and frame size kept), PING
// (acknowledged), WINDOW_UPDATE, RST_STREAM, GOAWAY; the server's answers are counted, not read.
#ifndef TXFN_TESTS_HELD_GRPC_STREAMS_H_
#define TXFN_TESTS_HELD_GRPC_STREAMS_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace txfn::testing {

// HTTP/2 frame types and flags (RFC 9113 6).
namespace http2 {
inline constexpr uint8_t kData = 0, kHeaders = 1, kRstStream = 3, kSettings = 4, kPing = 6,
                         kGoaway = 7, kWindowUpdate = 8;
inline constexpr uint8_t kAck = 1, kEndStream = 1, kEndHeaders = 4;
}  // namespace http2

// An HTTP/2 frame (RFC 9113 4.1) of `type` with `flags` on `stream`, appended to `out`.
inline void AppendHttp2Frame(std::string* out, uint8_t type, uint8_t flags, uint32_t stream,
                             std::string_view payload) {
  const uint32_t length = static_cast<uint32_t>(payload.size());
  for (int shift : {16, 8, 0}) out->push_back(static_cast<char>(length >> shift));
  out->push_back(static_cast<char>(type));
  out->push_back(static_cast<char>(flags));
  for (int shift : {24, 16, 8, 0}) out->push_back(static_cast<char>(stream >> shift));
  out->append(payload);
}

// A header field as an HPACK literal, not indexed, with a literal name (RFC 7541 6.2.2); its
// strings not Huffman-coded, their lengths 7-bit-prefix integers (5.1).
inline void AppendHpackField(std::string* out, std::string_view name, std::string_view value) {
  out->push_back('\0');
  for (const std::string_view text : {name, value}) {
    uint64_t length = text.size();
    if (length < 127) {
      out->push_back(static_cast<char>(length));
    } else {
      out->push_back(127);
      for (length -= 127; length >= 128; length >>= 7) {
        out->push_back(static_cast<char>(0x80 | (length & 0x7f)));
      }
      out->push_back(static_cast<char>(length));
    }
    out->append(text);
  }
}

class HeldGrpcStreams {
 public:
  HeldGrpcStreams() = default;
  HeldGrpcStreams(const HeldGrpcStreams&) = delete;
  HeldGrpcStreams& operator=(const HeldGrpcStreams&) = delete;
  ~HeldGrpcStreams() {
    if (fd_ >= 0) close(fd_);
  }

  // Connects to 127.0.0.1:port and sends the client preface.
  absl::Status Connect(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      return absl::UnavailableError(
          absl::StrCat("connect to 127.0.0.1:", port, ": ", strerror(errno)));
    }
    fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
    std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    AppendHttp2Frame(&preface, http2::kSettings, 0, 0, "");
    if (!Send(preface)) {
      return absl::UnavailableError(
          absl::StrCat("127.0.0.1:", port, " closed the connection or took no preface"));
    }
    return absl::OkStatus();
  }

  // Opens a stream for `path` and sends a gRPC message of `message_bytes` (zeros) but its last
  // byte. Returns the bytes sent; fewer when the server reset the stream or went away, or let
  // nothing through for `stall` (after which usable() is false: the server stopped reading).
  int64_t Hold(std::string_view path, int64_t message_bytes,
               absl::Duration stall = absl::Seconds(2)) {
    if (!usable()) return 0;
    const uint32_t stream = next_stream_;
    next_stream_ += 2;
    stream_window_[stream] = initial_stream_window_;
    std::string block;
    for (const auto& [name, value] :
         {std::pair<std::string_view, std::string_view>{":method", "POST"},
          {":scheme", "http"},
          {":path", path},
          {":authority", "127.0.0.1"},
          {"content-type", "application/grpc"},
          {"te", "trailers"}}) {
      AppendHpackField(&block, name, value);
    }
    std::string frames;
    AppendHttp2Frame(&frames, http2::kHeaders, http2::kEndHeaders, stream, block);
    if (!Send(frames)) return 0;
    // The gRPC message prefix: not compressed, then its length.
    std::string prefix(5, '\0');
    for (int i = 0; i < 4; ++i) prefix[1 + i] = static_cast<char>(message_bytes >> (24 - 8 * i));
    int64_t to_send = 5 + message_bytes - 1;
    int64_t sent = 0;
    const std::string zeros(kMaxChunk, '\0');
    absl::Time stall_at = absl::Now() + stall;
    while (sent < to_send && usable() && !reset_.contains(stream)) {
      const int64_t window = std::min(connection_window_, stream_window_[stream]);
      const int64_t chunk = std::min({to_send - sent, window, max_frame_size_, kMaxChunk});
      if (chunk <= 0) {
        if (absl::Now() >= stall_at) {
          stalled_ = true;
          break;
        }
        Pump(absl::Milliseconds(20));  // for a WINDOW_UPDATE
        continue;
      }
      std::string payload;
      if (sent < 5) payload = prefix.substr(sent, std::min<int64_t>(5 - sent, chunk));
      payload.append(zeros, 0, chunk - payload.size());
      frames.clear();
      AppendHttp2Frame(&frames, http2::kData, 0, stream, payload);
      if (!Send(frames)) break;
      connection_window_ -= payload.size();
      stream_window_[stream] -= payload.size();
      sent += payload.size();
      stall_at = absl::Now() + stall;
    }
    return sent;
  }

  // Reads what the server sent meanwhile (for up to `wait`), and answers it.
  void Pump(absl::Duration wait) {
    Read(wait);
    Send("");
  }

  // False once the server went away (GOAWAY or closed) or stopped taking data.
  bool usable() const { return fd_ >= 0 && !closed_ && !goaway_ && !stalled_; }
  // Streams the server reset, or the connection it dropped: what it refused to buffer.
  bool refused() const { return !reset_.empty() || goaway_ || closed_; }
  int streams_reset() const { return static_cast<int>(reset_.size()); }
  // The error codes of the server's RST_STREAMs, and of its GOAWAY (-1: none): 11,
  // ENHANCE_YOUR_CALM, is gRPC's "buffers full"; 1 or 3 (PROTOCOL_ERROR, FLOW_CONTROL_ERROR)
  // would be this client's mistake.
  const absl::flat_hash_set<uint32_t>& reset_codes() const { return reset_codes_; }
  int64_t goaway_code() const { return goaway_code_; }
  int streams_answered() const { return answered_; }
  bool goaway() const { return goaway_; }
  bool stalled() const { return stalled_; }

 private:
  static constexpr int64_t kMaxChunk = 1 << 16;

  // Reads what the server sent (waiting up to `wait` for it), and handles its frames.
  void Read(absl::Duration wait) {
    pollfd poll_fd{.fd = fd_, .events = POLLIN, .revents = 0};
    if (closed_ || poll(&poll_fd, 1, static_cast<int>(absl::ToInt64Milliseconds(wait))) <= 0) {
      return;
    }
    char buffer[1 << 16];
    for (;;) {
      const ssize_t n = read(fd_, buffer, sizeof(buffer));
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        closed_ = true;  // after handling what came before
        break;
      }
      if (n < 0) break;
      incoming_.append(buffer, n);
    }
    HandleFrames();
  }

  static uint32_t Read32(std::string_view bytes) {
    uint32_t value = 0;
    for (int i = 0; i < 4; ++i) value = (value << 8) | static_cast<uint8_t>(bytes[i]);
    return value;
  }

  // Sends the replies owed (acknowledgements), then `bytes`, whole, reading the server
  // meanwhile; false if the connection went or the server stopped reading. After a stall
  // nothing more is sent: a frame may have been cut, and what followed would be read as its
  // rest.
  bool Send(std::string_view more) {
    if (stalled_) return false;
    std::string out = std::move(replies_);
    replies_.clear();
    out.append(more);
    std::string_view bytes = out;
    while (!bytes.empty() && !closed_) {
      // MSG_NOSIGNAL: a connection the server closed is an outcome here, not a SIGPIPE.
      const ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n > 0) {
        bytes.remove_prefix(n);
        send_stall_at_ = absl::InfiniteFuture();  // it moves: not a stall
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        closed_ = true;
        break;
      }
      // The socket's buffer is full: the server is not reading. Take what it sent, and wait.
      pollfd poll_fd{.fd = fd_, .events = POLLOUT, .revents = 0};
      poll(&poll_fd, 1, 20);
      Read(absl::ZeroDuration());
      if (send_stall_at_ == absl::InfiniteFuture()) send_stall_at_ = absl::Now() + absl::Seconds(2);
      if (absl::Now() >= send_stall_at_) {
        stalled_ = true;
        return false;
      }
    }
    send_stall_at_ = absl::InfiniteFuture();
    return !closed_;
  }

  void HandleFrames() {
    size_t at = 0;
    while (incoming_.size() - at >= 9) {
      const std::string_view header(incoming_.data() + at, 9);
      const uint32_t length = (static_cast<uint8_t>(header[0]) << 16) |
                              (static_cast<uint8_t>(header[1]) << 8) |
                              static_cast<uint8_t>(header[2]);
      if (incoming_.size() - at < 9 + length) break;
      const uint8_t type = header[3], flags = header[4];
      const uint32_t stream = Read32(header.substr(5)) & 0x7fffffff;
      const std::string_view payload(incoming_.data() + at + 9, length);
      at += 9 + length;
      switch (type) {
        case http2::kSettings:
          if (flags & http2::kAck) break;
          for (size_t i = 0; i + 6 <= payload.size(); i += 6) {
            const uint16_t id =
                (static_cast<uint8_t>(payload[i]) << 8) | static_cast<uint8_t>(payload[i + 1]);
            const int64_t value = Read32(payload.substr(i + 2));
            if (id == 4) {  // SETTINGS_INITIAL_WINDOW_SIZE: open streams' windows move with it
              for (auto& [stream_id, window] : stream_window_) {
                window += value - initial_stream_window_;
              }
              initial_stream_window_ = value;
            } else if (id == 5) {  // SETTINGS_MAX_FRAME_SIZE
              max_frame_size_ = value;
            }
          }
          AppendHttp2Frame(&replies_, http2::kSettings, http2::kAck, 0, "");
          break;
        case http2::kPing:
          if (!(flags & http2::kAck))
            AppendHttp2Frame(&replies_, http2::kPing, http2::kAck, 0, payload);
          break;
        case http2::kWindowUpdate:
          if (payload.size() < 4) break;
          (stream == 0 ? connection_window_ : stream_window_[stream]) +=
              Read32(payload) & 0x7fffffff;
          break;
        case http2::kRstStream:
          reset_.insert(stream);
          if (payload.size() >= 4) reset_codes_.insert(Read32(payload));
          break;
        case http2::kGoaway:
          goaway_ = true;
          if (payload.size() >= 8) goaway_code_ = Read32(payload.substr(4));
          break;
        case http2::kHeaders:
          if (flags & http2::kEndStream) ++answered_;
          break;
        default:
          break;
      }
    }
    incoming_.erase(0, at);
  }

  int fd_ = -1;
  uint32_t next_stream_ = 1;
  int64_t connection_window_ = 65535;
  int64_t initial_stream_window_ = 65535;
  int64_t max_frame_size_ = 16384;
  absl::flat_hash_map<uint32_t, int64_t> stream_window_;
  absl::flat_hash_set<uint32_t> reset_;
  absl::flat_hash_set<uint32_t> reset_codes_;
  int64_t goaway_code_ = -1;
  std::string incoming_;  // read, not yet handled
  std::string replies_;   // owed to the server, sent before what is sent next
  absl::Time send_stall_at_ = absl::InfiniteFuture();
  int answered_ = 0;
  bool closed_ = false, goaway_ = false, stalled_ = false;
};

}  // namespace txfn::testing

#endif  // TXFN_TESTS_HELD_GRPC_STREAMS_H_
