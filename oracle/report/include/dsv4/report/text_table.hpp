// A plain text table with aligned columns, for the reports people read (certify, diff).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace dsv4::report {

enum class Align { kLeft, kRight };

class TextTable {
 public:
  // Adds a column; cells are padded to the widest cell (header included) of their column.
  void add_column(std::string header, Align align = Align::kLeft);
  // A row of exactly one cell per column (throws std::invalid_argument naming the counts otherwise).
  void add_row(std::vector<std::string> cells);
  std::size_t rows() const { return rows_.size(); }
  // Header, a rule of dashes, the rows; columns separated by two spaces; no trailing spaces;
  // every line ends in '\n'. Widths count UTF-8 code points.
  std::string render() const;

 private:
  std::vector<std::string> headers_;
  std::vector<Align> aligns_;
  std::vector<std::vector<std::string>> rows_;
};

// Display width of a UTF-8 string (code points; every character counts as one column).
std::size_t display_width(const std::string& s);

}  // namespace dsv4::report
