// Document ids (txfn/document_id.h).
#include "txfn/document_id.h"

#include <array>
#include <cstdint>
#include <string>

#include "txfn/internal/strings.h"

namespace txfn {
namespace {

constexpr std::string_view kIdAlphabet = "0123456789abcdefghjkmnpqrstvwxyz";
constexpr size_t kIdBytes = 20;

// kIdAlphabet's inverse: the digit of a character, or -1.
constexpr std::array<int8_t, 256> kIdDigits = [] {
  std::array<int8_t, 256> digits{};
  digits.fill(-1);
  for (size_t i = 0; i < kIdAlphabet.size(); ++i) {
    digits[static_cast<unsigned char>(kIdAlphabet[i])] = static_cast<int8_t>(i);
  }
  return digits;
}();

int IdDigit(char c) { return kIdDigits[static_cast<unsigned char>(c)]; }

// Writes a chunk of 40 bits as its 8 characters at `out`.
void WriteChunk(uint64_t bits, char* out) {
  for (size_t g = 0; g < 8; ++g) out[g] = kIdAlphabet[(bits >> (35 - 5 * g)) & 31];
}

}  // namespace

std::string MakeDocumentId(IndexId table, std::string_view bytes16) {
  unsigned char raw[kIdBytes];
  for (size_t i = 0; i < 16; ++i) raw[i] = static_cast<unsigned char>(bytes16[i]);
  for (int i = 0; i < 4; ++i) raw[16 + i] = static_cast<unsigned char>(table >> (24 - 8 * i));
  // 160 bits = 4 chunks of 40 bits (5 bytes) = 4 x 8 groups of 5 bits. Every
  // insert makes one, so it is done a chunk at a time, not a bit at a time.
  std::string id(kDocumentIdLength, '\0');
  for (size_t chunk = 0; chunk < 4; ++chunk) {
    uint64_t bits = 0;
    for (size_t b = 0; b < 5; ++b) bits = (bits << 8) | raw[chunk * 5 + b];
    WriteChunk(bits, &id[chunk * 8]);
  }
  return id;
}

namespace {

// The last 40 bits of a well-formed id (8 random bits, then the table); InvalidArgument if
// `id` is malformed.
absl::StatusOr<uint64_t> LastChunk(std::string_view id) {
  if (id.size() != kDocumentIdLength) {
    return absl::InvalidArgumentError(internal::StrCat(
        "malformed document id '", id, "': expected ", kDocumentIdLength, " chars"));
  }
  uint64_t last_chunk = 0;
  for (size_t group = 0; group < kDocumentIdLength; ++group) {
    int digit = IdDigit(id[group]);
    if (digit < 0) {
      return absl::InvalidArgumentError(internal::StrCat("malformed document id '", id, "'"));
    }
    if (group >= 24) last_chunk = (last_chunk << 5) | static_cast<uint64_t>(digit);
  }
  return last_chunk;
}

}  // namespace

absl::StatusOr<IndexId> DocumentIdTable(std::string_view id) {
  absl::StatusOr<uint64_t> last_chunk = LastChunk(id);
  if (!last_chunk.ok()) return last_chunk.status();
  return static_cast<IndexId>(*last_chunk & 0xffffffffu);
}

absl::StatusOr<std::string> DocumentIdWithTable(std::string_view id, IndexId table) {
  absl::StatusOr<uint64_t> last_chunk = LastChunk(id);
  if (!last_chunk.ok()) return last_chunk.status();
  std::string moved(id);
  WriteChunk((*last_chunk & ~uint64_t{0xffffffffu}) | table, &moved[24]);
  return moved;
}

}  // namespace txfn
