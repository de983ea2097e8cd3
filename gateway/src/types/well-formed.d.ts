// String.prototype.isWellFormed (ES2024, in Node 20) while tsconfig's lib stays at ES2022.
interface String {
  /** False when the string holds a lone UTF-16 surrogate (not valid Unicode text). */
  isWellFormed(): boolean;
}
