// oracle/checkpoint/include/dsv4/checkpoint/checkpoint_file.hpp
#include "dsv4/checkpoint/checkpoint_file.hpp"

#include "dsv4/io/safetensors.hpp"

namespace dsv4 {

ModelWeights load_checkpoint_file(const ModelConfig& c, const std::string& path) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  const std::map<std::string, std::string> names = official_name_table(file.names());
  const TensorLookup lookup = [&](const std::string& official) -> std::optional<Tensor> {
    const auto it = names.find(official);
    if (it == names.end()) return std::nullopt;
    return file.read(it->second);
  };
  return load_model_weights(c, lookup);
}

void write_checkpoint_file(const ModelConfig& c, const ModelWeights& w, const std::string& path,
                           CheckpointNaming naming, CheckpointForm form) {
  write_safetensors(path, model_weight_tensors(c, w, naming, form));
}

}  // namespace dsv4
