// oracle/checkpoint/include/dsv4/checkpoint/checkpoint_file.hpp
#include "dsv4/checkpoint/checkpoint_file.hpp"

#include <set>
#include <string>
#include <vector>

#include "dsv4/io/safetensors.hpp"

namespace dsv4 {

ModelWeights load_checkpoint_file(const ModelConfig& c, const std::string& path) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  const std::map<std::string, std::string> names = official_name_table(file.names());
  std::set<std::string> used;
  const TensorLookup lookup = [&](const std::string& official) -> std::optional<Tensor> {
    const auto it = names.find(official);
    if (it == names.end()) return std::nullopt;
    used.insert(it->second);
    return file.read(it->second);
  };
  ModelWeights w = load_model_weights(c, lookup);
  // A tensor the config has no parameter for means the file is not a checkpoint of this config
  // (more layers or experts, another naming): refused rather than silently ignored.
  std::vector<std::string> unused;
  for (const std::string& n : file.names())
    if (used.count(n) == 0) unused.push_back(n);
  if (!unused.empty())
    throw CheckpointError(unused.front() + ": not a parameter of config '" + c.name + "' (" +
                          std::to_string(unused.size()) + " such tensors in " + path +
                          "; is it a checkpoint of another config?)");
  return w;
}

void write_checkpoint_file(const ModelConfig& c, const ModelWeights& w, const std::string& path,
                           CheckpointNaming naming, CheckpointForm form) {
  write_safetensors(path, model_weight_tensors(c, w, naming, form));
}

}  // namespace dsv4
