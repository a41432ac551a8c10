// tools/address.h — network addresses on the tools' command lines.
#ifndef TXFN_TOOLS_ADDRESS_H_
#define TXFN_TOOLS_ADDRESS_H_

#include <string>

namespace txfn::tools {

// A bare port ("7400") as 127.0.0.1:7400, as every flag that takes an address reads it
// (binding loopback, or reaching a server on this machine); HOST:PORT as it is.
inline std::string LoopbackIfBarePort(std::string address) {
  if (address.find(':') == std::string::npos) address = "127.0.0.1:" + address;
  return address;
}

}  // namespace txfn::tools

#endif  // TXFN_TOOLS_ADDRESS_H_
