// The version of dsv4: the one place it is written (`dsv4 --version`, golden manifests'
// "generator", certify reports).
#pragma once

namespace dsv4 {

inline constexpr const char* kDsv4Version = "0.1.0";

}  // namespace dsv4
