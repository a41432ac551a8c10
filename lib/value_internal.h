// lib/value_internal.h — helpers shared by the Value encodings (private).
#ifndef TXFN_LIB_VALUE_INTERNAL_H_
#define TXFN_LIB_VALUE_INTERNAL_H_

#include <bit>
#include <cmath>
#include <cstdint>

namespace txfn::value_internal {

inline constexpr uint64_t kSignBit = uint64_t{1} << 63;
// The one NaN every encoding that canonicalizes NaN uses (a quiet NaN).
inline constexpr uint64_t kCanonicalNaNBits = 0x7FF8000000000000ULL;

// Maps a double to an unsigned integer whose order is the Value float order:
// IEEE-754 totalOrder with every NaN mapped to one NaN above +inf.
inline uint64_t OrderedFloatBits(double d) {
  uint64_t bits = std::isnan(d) ? kCanonicalNaNBits : std::bit_cast<uint64_t>(d);
  return (bits & kSignBit) ? ~bits : (bits | kSignBit);
}

// The inverse of OrderedFloatBits (for canonical NaN).
inline double FloatFromOrderedBits(uint64_t u) {
  uint64_t bits = (u & kSignBit) ? (u & ~kSignBit) : ~u;
  return std::bit_cast<double>(bits);
}

// Big-endian 64-bit store/load (compiles to a byte swap).
inline void StoreBigEndian64(char* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xFF);
    v >>= 8;
  }
}
inline uint64_t LoadBigEndian64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

}  // namespace txfn::value_internal

#endif  // TXFN_LIB_VALUE_INTERNAL_H_
