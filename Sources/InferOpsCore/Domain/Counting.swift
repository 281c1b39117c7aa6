extension Int {
    /// `1 GPU`, `4 GPUs`: a count with its noun in the right number, so messages read as sentences.
    func counting(_ noun: String, plural: String? = nil) -> String {
        "\(self) " + (self == 1 ? noun : plural ?? noun + "s")
    }
}
