// The refusal checks the component, reader and config tests share: a std::invalid_argument whose
// message names the offending field (component bad input), the one-line message of an InputError
// (file readers, name maps, tensor sources), and the field a config.json is refused for.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <stdexcept>
#include <string>

#include "dsv4/config/model_config.hpp"
#include "dsv4/io/input_error.hpp"

namespace dsv4::testing_support {

// `fn` throws std::invalid_argument and its message contains `field`.
inline void expect_invalid(const std::function<void()>& fn, const std::string& field) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected one naming " << field;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
  }
}

// The message of the InputError `f` throws, checked to be one line ("" and a test failure when it
// throws nothing).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << "one line: " << m;
    return m;
  }
  ADD_FAILURE() << "no InputError";
  return "";
}

// The field parse_config_json refuses `json_text` for (ConfigError::field()), or "<no error>".
inline std::string config_error_field(const std::string& json_text) {
  try {
    (void)parse_config_json(json_text, "test.json");
  } catch (const ConfigError& e) {
    return e.field();
  }
  return "<no error>";
}

}  // namespace dsv4::testing_support
