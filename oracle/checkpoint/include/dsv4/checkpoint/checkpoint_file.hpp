// Model weights from and to safetensors checkpoint files (issue #4): the file format of
// oracle/io/safetensors.hpp joined with the parameter list of ref/model/checkpoint.hpp.
#pragma once

#include <string>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/checkpoint.hpp"
#include "dsv4/model/transformer.hpp"

namespace dsv4 {

// Loads every parameter of config c from a safetensors file in the official or the Hugging Face
// naming (detected by the `model.` prefix). Throws InputError for a malformed file and
// CheckpointError naming the tensor for a missing tensor, a wrong dtype or shape, a non-finite
// value, or a tensor that is no parameter of c (the file holds another config's model).
ModelWeights load_checkpoint_file(const ModelConfig& c, const std::string& path);

// Writes the weights as one safetensors file (atomically).
void write_checkpoint_file(const ModelConfig& c, const ModelWeights& w, const std::string& path,
                           CheckpointNaming naming = CheckpointNaming::kOfficial,
                           CheckpointForm form = CheckpointForm::kAsIs);

}  // namespace dsv4
