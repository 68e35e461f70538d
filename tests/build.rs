fn main() {
    fm_torch_link::emit()
}
